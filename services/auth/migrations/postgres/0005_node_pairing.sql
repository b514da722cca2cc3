-- Node pairing (OpenClaw `node.pair.*`): a store separate from device pairing
-- that approves the commands a node declares. A node id is its device id;
-- every row belongs to one tenant and one user (the node's owner). Lists are
-- JSON arrays of strings stored as TEXT, timestamps epoch milliseconds, flags
-- BIGINT 0/1. The node's token is kept as a SHA-256 hex digest only.

-- Pending node pairing requests: at most one per (tenant, node), merged while
-- live, valid 5 minutes from the last merge (expired rows are ignored and
-- cleared by the next request of the node).
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
    -- The declared commands an approval approves.
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

-- Row-level security, as every tenant-scoped table of 0002.
ALTER TABLE node_pairing_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON node_pairing_requests
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE paired_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON paired_nodes
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
