-- The history's filters (issue 16): a rule, a partner (the agent of a
-- client transfer) or an account, each newest start first, within a start
-- range or not. Status and start have theirs since 0002.
CREATE INDEX IF NOT EXISTS udmg_transfer_history_rule ON udmg_transfer_history (rule, start DESC);
CREATE INDEX IF NOT EXISTS udmg_transfer_history_agent ON udmg_transfer_history (agent, start DESC);
CREATE INDEX IF NOT EXISTS udmg_transfer_history_account ON udmg_transfer_history (account, start DESC);
