-- The tasks a transfer's rule chained (issue 14): a JSON array of its task
-- runs (phase, index, type, state, start, stop, node, error, output), ''
-- when it ran none.
ALTER TABLE udmg_transfer_history ADD COLUMN tasks text NOT NULL DEFAULT '';
