-- Finished transfers, for reports; modelled on Waarp Gateway's
-- transfer_history. The id is the cluster's transfer id, so replaying an
-- entry after a failover overwrites the same row.
CREATE TABLE IF NOT EXISTS udmg_transfer_history (
    id            text        PRIMARY KEY,
    remote_id     text        NOT NULL DEFAULT '',
    is_server     boolean     NOT NULL,
    is_send       boolean     NOT NULL,
    protocol      text        NOT NULL,
    rule          text        NOT NULL,
    account       text        NOT NULL,
    agent         text        NOT NULL,
    local_path    text        NOT NULL DEFAULT '',
    remote_path   text        NOT NULL DEFAULT '',
    filesize      bigint      NOT NULL DEFAULT -1,
    status        text        NOT NULL,
    step          text        NOT NULL DEFAULT '',
    progress      bigint      NOT NULL DEFAULT 0,
    error_code    text        NOT NULL DEFAULT '',
    error_details text        NOT NULL DEFAULT '',
    start         text        NOT NULL,
    stop          text        NULL,
    node_id       text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS udmg_transfer_history_start ON udmg_transfer_history (start DESC);
CREATE INDEX IF NOT EXISTS udmg_transfer_history_status ON udmg_transfer_history (status, start DESC);
