-- Devices, pairing, device tokens and API keys. Every row carries tenant_id.
-- No secret is stored: device tokens and API keys are kept as SHA-256 hex digests.
-- Lists of roles and scopes are JSON arrays of strings, stored as TEXT.
-- Timestamps are epoch milliseconds; 0 means "never / not set".

-- OpenClaw devices that were approved. A device id (hex SHA-256 of its public
-- key) belongs to one tenant.
CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    -- Pinned at approval; a change needs re-approval ("metadata-upgrade").
    platform      TEXT NOT NULL DEFAULT '',
    device_family TEXT NOT NULL DEFAULT '',
    client_id     TEXT NOT NULL DEFAULT '',
    client_mode   TEXT NOT NULL DEFAULT '',
    roles         TEXT NOT NULL DEFAULT '[]',
    scopes        TEXT NOT NULL DEFAULT '[]',
    remote_ip     TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    approved_at   BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_tenant ON devices (tenant_id);

-- Pending OpenClaw pairing requests (one per device, merged), valid 5 minutes.
CREATE TABLE device_pairing_requests (
    request_id    TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL UNIQUE,
    public_key    TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    platform      TEXT NOT NULL DEFAULT '',
    device_family TEXT NOT NULL DEFAULT '',
    client_id     TEXT NOT NULL DEFAULT '',
    client_mode   TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    roles         TEXT NOT NULL DEFAULT '[]',
    scopes        TEXT NOT NULL DEFAULT '[]',
    reason        TEXT NOT NULL,
    remote_ip     TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX device_pairing_requests_tenant ON device_pairing_requests (tenant_id, expires_at);

-- One bearer token per (device, role), stored hashed.
CREATE TABLE device_tokens (
    device_id    TEXT NOT NULL,
    role         TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    rotated_at   BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, role)
);
CREATE INDEX device_tokens_tenant ON device_tokens (tenant_id);

-- goclaw API keys (`clawgate_<32 hex>`), stored hashed. tenant_id '' = system key.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    owner_id     TEXT NOT NULL DEFAULT '',
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL DEFAULT '[]',
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- goclaw pairing codes (browser login and channel DM pairing), valid 60 minutes.
-- Resolved codes stay, with their status, so a sender can poll the outcome.
CREATE TABLE pairing_codes (
    request_id  TEXT PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    chat_id     TEXT NOT NULL DEFAULT '',
    account_id  TEXT NOT NULL DEFAULT '',
    remote_ip   TEXT NOT NULL DEFAULT '',
    -- 'pending' | 'approved' | 'rejected' | 'expired'
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    resolved_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX pairing_codes_sender ON pairing_codes (sender_id, created_at);
CREATE INDEX pairing_codes_account ON pairing_codes (tenant_id, channel, account_id, status);
-- At most one pending code per sender and channel.
CREATE UNIQUE INDEX pairing_codes_pending_sender
    ON pairing_codes (tenant_id, sender_id, channel) WHERE status = 'pending';

-- goclaw senders whose pairing code was approved.
CREATE TABLE paired_senders (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    sender_id  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    chat_id    TEXT NOT NULL DEFAULT '',
    account_id TEXT NOT NULL DEFAULT '',
    paired_by  TEXT NOT NULL DEFAULT '',
    paired_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sender_id, channel)
);
CREATE INDEX paired_senders_sender ON paired_senders (sender_id, channel);
