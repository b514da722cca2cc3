-- Node pairing (the SQLite side of PostgreSQL migration 0005_node_pairing):
-- a store separate from device pairing that approves the commands a node
-- declares. SQLite has no row-level security: the store's own `tenant_id`
-- filters keep tenants apart here. The token is kept as a SHA-256 hex digest.

-- Pending node pairing requests: at most one per (tenant, node), merged while
-- live, valid 5 minutes from the last merge.
CREATE TABLE node_pairing_requests (
    request_id       TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL CHECK (tenant_id <> ''),
    user_id          TEXT NOT NULL CHECK (user_id <> ''),
    node_id          TEXT NOT NULL CHECK (node_id <> ''),
    display_name     TEXT NOT NULL DEFAULT '',
    platform         TEXT NOT NULL DEFAULT '',
    version          TEXT NOT NULL DEFAULT '',
    core_version     TEXT NOT NULL DEFAULT '',
    ui_version       TEXT NOT NULL DEFAULT '',
    device_family    TEXT NOT NULL DEFAULT '',
    model_identifier TEXT NOT NULL DEFAULT '',
    caps             TEXT NOT NULL DEFAULT '[]',
    commands         TEXT NOT NULL DEFAULT '[]',
    remote_ip        TEXT NOT NULL DEFAULT '',
    silent           BIGINT NOT NULL DEFAULT 0,
    is_repair        BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    UNIQUE (tenant_id, node_id)
);
CREATE INDEX node_pairing_requests_user ON node_pairing_requests (tenant_id, user_id, created_at);

-- Approved nodes, one per (tenant, node).
CREATE TABLE paired_nodes (
    tenant_id         TEXT NOT NULL CHECK (tenant_id <> ''),
    node_id           TEXT NOT NULL CHECK (node_id <> ''),
    user_id           TEXT NOT NULL CHECK (user_id <> ''),
    display_name      TEXT NOT NULL DEFAULT '',
    platform          TEXT NOT NULL DEFAULT '',
    version           TEXT NOT NULL DEFAULT '',
    core_version      TEXT NOT NULL DEFAULT '',
    ui_version        TEXT NOT NULL DEFAULT '',
    device_family     TEXT NOT NULL DEFAULT '',
    model_identifier  TEXT NOT NULL DEFAULT '',
    caps              TEXT NOT NULL DEFAULT '[]',
    approved_commands TEXT NOT NULL DEFAULT '[]',
    remote_ip         TEXT NOT NULL DEFAULT '',
    token_hash        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    approved_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, node_id)
);
CREATE INDEX paired_nodes_user ON paired_nodes (tenant_id, user_id, approved_at);
