-- Everything a connect of a paired device reads, in one round trip: the
-- device `p_device_id` (its id is derived from a public key whose signature
-- was verified), its token of `p_role`, its user's row and its tenant's
-- status; no row when the device is not paired. Runs as the owner of the
-- tables (SECURITY DEFINER: row-level security does not apply), like
-- device_tenant, whose tenant it reads in the same statement. Columns are
-- prefixed d_ (device), t_ (token, NULL when none), u_ (user, NULL when
-- none); tenant_status is NULL when the tenant has no row.
CREATE FUNCTION connect_facts(p_device_id TEXT, p_role TEXT)
    RETURNS TABLE (
        d_device_id TEXT,
        d_tenant_id TEXT,
        d_user_id TEXT,
        d_public_key TEXT,
        d_display_name TEXT,
        d_platform TEXT,
        d_device_family TEXT,
        d_client_id TEXT,
        d_client_mode TEXT,
        d_roles TEXT,
        d_scopes TEXT,
        d_remote_ip TEXT,
        d_created_at BIGINT,
        d_approved_at BIGINT,
        d_last_seen_at BIGINT,
        t_device_id TEXT,
        t_role TEXT,
        t_tenant_id TEXT,
        t_user_id TEXT,
        t_token_hash TEXT,
        t_scopes TEXT,
        t_created_at BIGINT,
        t_rotated_at BIGINT,
        t_revoked_at BIGINT,
        t_last_used_at BIGINT,
        u_tenant_id TEXT,
        u_user_id TEXT,
        u_role TEXT,
        u_display_name TEXT,
        u_created_at BIGINT,
        u_updated_at BIGINT,
        u_deleted_at BIGINT,
        tenant_status TEXT
    )
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$
        SELECT d.device_id AS d_device_id,
               d.tenant_id AS d_tenant_id,
               d.user_id AS d_user_id,
               d.public_key AS d_public_key,
               d.display_name AS d_display_name,
               d.platform AS d_platform,
               d.device_family AS d_device_family,
               d.client_id AS d_client_id,
               d.client_mode AS d_client_mode,
               d.roles AS d_roles,
               d.scopes AS d_scopes,
               d.remote_ip AS d_remote_ip,
               d.created_at AS d_created_at,
               d.approved_at AS d_approved_at,
               d.last_seen_at AS d_last_seen_at,
               t.device_id AS t_device_id,
               t.role AS t_role,
               t.tenant_id AS t_tenant_id,
               t.user_id AS t_user_id,
               t.token_hash AS t_token_hash,
               t.scopes AS t_scopes,
               t.created_at AS t_created_at,
               t.rotated_at AS t_rotated_at,
               t.revoked_at AS t_revoked_at,
               t.last_used_at AS t_last_used_at,
               u.tenant_id AS u_tenant_id,
               u.user_id AS u_user_id,
               u.role AS u_role,
               u.display_name AS u_display_name,
               u.created_at AS u_created_at,
               u.updated_at AS u_updated_at,
               u.deleted_at AS u_deleted_at,
               n.status AS tenant_status
        FROM devices d
        LEFT JOIN device_tokens t
            ON t.device_id = d.device_id AND t.role = p_role AND t.tenant_id = d.tenant_id
        LEFT JOIN users u ON u.tenant_id = d.tenant_id AND u.user_id = d.user_id
        LEFT JOIN tenants n ON n.id = d.tenant_id
        WHERE d.device_id = p_device_id
    $$;

-- Pinned to this schema and not callable by PUBLIC, as every lookup of 0002.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION connect_facts(TEXT, TEXT) SET search_path = %I, pg_temp',
        current_schema()
    );
END
$$;
REVOKE ALL ON FUNCTION connect_facts(TEXT, TEXT) FROM PUBLIC;
