-- Whether user `p_user_id` of tenant `p_tenant_id` was removed. Asked on every
-- connect of an authenticated credential, before any tenant transaction: one
-- round trip instead of a transaction of four. Runs as the owner of the
-- tables (SECURITY DEFINER, so row-level security does not apply to it),
-- takes the exact tenant and user the credential proved, and returns one
-- boolean.
CREATE FUNCTION user_removed(p_tenant_id TEXT, p_user_id TEXT) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM users
            WHERE tenant_id = p_tenant_id AND user_id = p_user_id AND deleted_at > 0
        )
    $$;

-- Pinned to this schema and not callable by PUBLIC, as every lookup of 0002.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION user_removed(TEXT, TEXT) SET search_path = %I, pg_temp',
        current_schema()
    );
END
$$;
REVOKE ALL ON FUNCTION user_removed(TEXT, TEXT) FROM PUBLIC;
