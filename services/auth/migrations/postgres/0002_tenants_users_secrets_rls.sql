-- Tenants, their users and their sealed secrets; row-level security on every
-- tenant-scoped table; SECURITY DEFINER lookups for the few questions asked
-- before the tenant is known.
--
-- The services' runtime role is neither the owner of these tables nor able to
-- bypass row-level security: it sees a tenant's rows only inside a transaction
-- that set `app.tenant_id` (`Database::begin_tenant`). With the setting absent
-- or empty the policies match no row at all.

-- Tenants are global (not tenant-scoped): the connect chains resolve a tenant
-- named by id or slug before anything else is known.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY CHECK (id <> ''),
    slug       TEXT NOT NULL UNIQUE CHECK (slug <> ''),
    name       TEXT NOT NULL DEFAULT '',
    -- 'active' | 'disabled' (a disabled tenant refuses every connect)
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Memberships: a user of a tenant and its role there. Removal is soft
-- (deleted_at > 0): the row keeps refusing the user's credentials.
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

-- Tenant secrets, sealed with AES-256-GCM (associated data "tenant_id/name"):
-- `ciphertext` is base64 of nonce ‖ ciphertext ‖ tag, `key_id` names the key.
CREATE TABLE secrets (
    tenant_id  TEXT NOT NULL CHECK (tenant_id <> ''),
    name       TEXT NOT NULL CHECK (name <> ''),
    key_id     TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- 1: the connect that made the request fixed its user (an API key, or a device
-- already paired), and approval keeps that user; 0: approval gives the device
-- to the approver.
ALTER TABLE device_pairing_requests ADD COLUMN user_bound BIGINT NOT NULL DEFAULT 0;

-- Every tenant the existing rows name becomes a tenant record (id = slug = name).
INSERT INTO tenants (id, slug, name, status, created_at, updated_at)
SELECT t, t, t, 'active', (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT,
       (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT
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

-- No row without a tenant. NOT VALID: checked for every new or changed row; a
-- leftover tenant-less row (a former system API key) is unreachable anyway,
-- since no policy ever matches an empty tenant.
ALTER TABLE devices ADD CONSTRAINT devices_tenant_set CHECK (tenant_id <> '') NOT VALID;
ALTER TABLE device_pairing_requests
    ADD CONSTRAINT device_pairing_requests_tenant_set CHECK (tenant_id <> '') NOT VALID;
ALTER TABLE device_tokens ADD CONSTRAINT device_tokens_tenant_set CHECK (tenant_id <> '') NOT VALID;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_tenant_set CHECK (tenant_id <> '') NOT VALID;
ALTER TABLE pairing_codes ADD CONSTRAINT pairing_codes_tenant_set CHECK (tenant_id <> '') NOT VALID;
ALTER TABLE paired_senders
    ADD CONSTRAINT paired_senders_tenant_set CHECK (tenant_id <> '') NOT VALID;

CREATE INDEX users_active ON users (tenant_id, deleted_at, user_id);
CREATE INDEX api_keys_owner ON api_keys (tenant_id, owner_id);
CREATE INDEX device_tokens_user ON device_tokens (tenant_id, user_id);

-- Row-level security: one policy per tenant-scoped table, for every command.
-- USING hides (and protects from UPDATE/DELETE) other tenants' rows; WITH CHECK
-- refuses writing a row of another tenant.
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON devices
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE device_pairing_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON device_pairing_requests
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE device_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON device_tokens
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON api_keys
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE pairing_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON pairing_codes
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE paired_senders ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON paired_senders
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON users
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON secrets
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

-- Lookups before the tenant is known. Each runs as the owner of the tables
-- (SECURITY DEFINER, so row-level security does not apply to it), takes the
-- exact key the caller proved or presented, and returns only tenant ids; the
-- service then reads the row itself inside that tenant's transaction.

-- The tenant of the paired device `p_device_id` (a device id derived from a
-- public key whose signature was verified).
CREATE FUNCTION device_tenant(p_device_id TEXT) RETURNS TEXT
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$ SELECT tenant_id FROM devices WHERE device_id = p_device_id $$;

-- Makes room for a new pairing request of a proven device in `p_tenant_id`:
-- removes the device's expired requests and a live one left in another tenant
-- (the device's newest connect decides where it asks to be paired; a device id
-- has at most one request, in one tenant). Returns how many rows went.
CREATE FUNCTION release_device_request(p_device_id TEXT, p_tenant_id TEXT, p_now BIGINT)
    RETURNS BIGINT
    LANGUAGE sql VOLATILE SECURITY DEFINER
    AS $$
        WITH gone AS (
            DELETE FROM device_pairing_requests
            WHERE device_id = p_device_id AND (tenant_id <> p_tenant_id OR expires_at <= p_now)
            RETURNING 1
        )
        SELECT COUNT(*) FROM gone
    $$;

-- The tenant of the API key whose SHA-256 is `p_key_hash`.
CREATE FUNCTION api_key_tenant(p_key_hash TEXT) RETURNS TEXT
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$ SELECT tenant_id FROM api_keys WHERE key_hash = p_key_hash $$;

-- The tenants in which goclaw sender (`p_sender_id`, `p_channel`) is paired and live.
CREATE FUNCTION paired_sender_tenants(p_sender_id TEXT, p_channel TEXT, p_now BIGINT)
    RETURNS SETOF TEXT
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$
        SELECT tenant_id FROM paired_senders
        WHERE sender_id = p_sender_id AND channel = p_channel AND expires_at > p_now
        ORDER BY tenant_id
    $$;

-- The tenant of the newest pairing code of goclaw sender `p_sender_id` (for the
-- public status poll, which reveals only a status).
CREATE FUNCTION latest_code_tenant(p_sender_id TEXT) RETURNS TEXT
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$
        SELECT tenant_id FROM pairing_codes WHERE sender_id = p_sender_id
        ORDER BY created_at DESC, request_id DESC LIMIT 1
    $$;

-- Pin every SECURITY DEFINER function of this schema to it (pg_temp last, so
-- no temporary table can stand in for ours) and take EXECUTE away from PUBLIC:
-- only roles granted it (`Database::grant_to_app_role`) may call them.
DO $$
DECLARE
    f REGPROCEDURE;
BEGIN
    FOR f IN
        SELECT p.oid FROM pg_proc p
        WHERE p.prosecdef
          AND p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
