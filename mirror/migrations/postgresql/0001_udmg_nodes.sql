-- One row per gateway node, upserted by the node itself every HeartbeatCheck;
-- the leader sets OFFLINE for nodes gossip reports dead.
CREATE TABLE IF NOT EXISTS udmg_nodes (
    node_id          text        PRIMARY KEY,
    hostname         text        NOT NULL DEFAULT '',
    ip_address       text        NOT NULL DEFAULT '',
    port             integer     NOT NULL DEFAULT 0,
    status           text        NOT NULL,
    licensed         boolean     NOT NULL DEFAULT false,
    started_at       timestamptz NOT NULL,
    last_update      timestamptz NOT NULL,
    last_active_date timestamptz NULL
);
