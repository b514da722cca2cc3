-- Tenants, their users and their sealed secrets (the SQLite side of the
-- PostgreSQL migration of the same name). SQLite has no row-level security:
-- the store's own `tenant_id` filters keep tenants apart here. Existing tables
-- cannot gain CHECK constraints without a rebuild; triggers refuse an empty
-- tenant instead.

-- Tenants are global (not tenant-scoped).
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY CHECK (id <> ''),
    slug       TEXT NOT NULL UNIQUE CHECK (slug <> ''),
    name       TEXT NOT NULL DEFAULT '',
    -- 'active' | 'disabled' (a disabled tenant refuses every connect)
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Memberships; removal is soft (deleted_at > 0).
CREATE TABLE users (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) CHECK (tenant_id <> ''),
    user_id      TEXT NOT NULL CHECK (user_id <> ''),
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    display_name TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    deleted_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, user_id)
);

-- Tenant secrets, sealed with AES-256-GCM (associated data "tenant_id/name").
CREATE TABLE secrets (
    tenant_id  TEXT NOT NULL CHECK (tenant_id <> ''),
    name       TEXT NOT NULL CHECK (name <> ''),
    key_id     TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- 1: approval keeps the request's user; 0: the device goes to the approver.
ALTER TABLE device_pairing_requests ADD COLUMN user_bound BIGINT NOT NULL DEFAULT 0;

INSERT INTO tenants (id, slug, name, status, created_at, updated_at)
SELECT t, t, t, 'active', CAST(strftime('%s', 'now') AS INTEGER) * 1000,
       CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM (
    SELECT tenant_id AS t FROM devices
    UNION SELECT tenant_id FROM device_pairing_requests
    UNION SELECT tenant_id FROM device_tokens
    UNION SELECT tenant_id FROM api_keys
    UNION SELECT tenant_id FROM pairing_codes
    UNION SELECT tenant_id FROM paired_senders
) existing
WHERE t <> ''
ON CONFLICT DO NOTHING;

CREATE INDEX users_active ON users (tenant_id, deleted_at, user_id);
CREATE INDEX api_keys_owner ON api_keys (tenant_id, owner_id);
CREATE INDEX device_tokens_user ON device_tokens (tenant_id, user_id);

-- No new or changed row without a tenant.
CREATE TRIGGER devices_tenant_insert BEFORE INSERT ON devices WHEN NEW.tenant_id = ''
BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER devices_tenant_update BEFORE UPDATE OF tenant_id ON devices WHEN NEW.tenant_id = ''
BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER device_pairing_requests_tenant_insert BEFORE INSERT ON device_pairing_requests
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER device_pairing_requests_tenant_update
BEFORE UPDATE OF tenant_id ON device_pairing_requests
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER device_tokens_tenant_insert BEFORE INSERT ON device_tokens
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER device_tokens_tenant_update BEFORE UPDATE OF tenant_id ON device_tokens
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER api_keys_tenant_insert BEFORE INSERT ON api_keys
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER api_keys_tenant_update BEFORE UPDATE OF tenant_id ON api_keys
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER pairing_codes_tenant_insert BEFORE INSERT ON pairing_codes
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER pairing_codes_tenant_update BEFORE UPDATE OF tenant_id ON pairing_codes
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER paired_senders_tenant_insert BEFORE INSERT ON paired_senders
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
CREATE TRIGGER paired_senders_tenant_update BEFORE UPDATE OF tenant_id ON paired_senders
WHEN NEW.tenant_id = '' BEGIN SELECT RAISE(ABORT, 'tenant_id must not be empty'); END;
