-- Tenant isolation in the database (row-level security), tenant and owner
-- consistency between a message and its session, and the retention purge as
-- the only way rows are ever deleted.

ALTER TABLE sessions ADD CONSTRAINT sessions_tenant_present CHECK (tenant_id <> '');
ALTER TABLE messages ADD CONSTRAINT messages_tenant_present CHECK (tenant_id <> '');

-- A message belongs to its session's tenant and user, never another's.
CREATE UNIQUE INDEX sessions_id_owner ON sessions (id, tenant_id, user_id);
ALTER TABLE messages ADD CONSTRAINT messages_session_owner
    FOREIGN KEY (session_id, tenant_id, user_id) REFERENCES sessions (id, tenant_id, user_id);

-- Admins list every user's sessions of their tenant; the purge finds old deletions.
CREATE INDEX sessions_live_tenant_by_updated
    ON sessions (tenant_id, updated_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX sessions_deleted_at ON sessions (deleted_at) WHERE deleted_at IS NOT NULL;

-- Row-level security: only rows of the transaction's tenant (app.tenant_id, set
-- transaction-locally by the service) are visible or writable. Without the
-- setting no row matches. The owning (migrating) role is not subject to it.
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY sessions_tenant ON sessions
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
CREATE POLICY messages_tenant ON messages
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

-- Whether session `id` may be deleted now: only inside purge_deleted_sessions
-- (which runs as the owner of the tables and sets clawgate.purge_before for its
-- own duration), and only when the session was soft-deleted before that cutoff.
CREATE FUNCTION purge_may_delete(session_id TEXT) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class
                           WHERE oid = 'sessions'::regclass)
       AND EXISTS (
           SELECT 1 FROM sessions s
           WHERE s.id = session_id
             AND s.deleted_at IS NOT NULL
             AND s.deleted_at < NULLIF(current_setting('clawgate.purge_before', true), '')::BIGINT)
$$;

-- Messages are never updated; they are deleted only by the purge, with their session.
CREATE OR REPLACE FUNCTION messages_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND purge_may_delete(OLD.session_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'transcript messages are append-only';
END;
$$ LANGUAGE plpgsql SET search_path FROM CURRENT;

CREATE FUNCTION sessions_deleted_only_by_purge() RETURNS trigger AS $$
BEGIN
    IF purge_may_delete(OLD.id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'sessions are only deleted by the retention purge';
END;
$$ LANGUAGE plpgsql SET search_path FROM CURRENT;

CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_deleted_only_by_purge();

-- Hard-deletes up to `max_sessions` sessions soft-deleted before `before` (epoch
-- ms) and their messages, across all tenants; returns how many of each. Runs as
-- the owner of the tables (SECURITY DEFINER), so row-level security does not
-- apply; sessions another purger is busy with are skipped.
CREATE FUNCTION purge_deleted_sessions(before BIGINT, max_sessions BIGINT)
RETURNS TABLE (purged_sessions BIGINT, purged_messages BIGINT)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    doomed TEXT[];
BEGIN
    IF before IS NULL OR max_sessions IS NULL THEN
        RAISE EXCEPTION 'purge needs a cutoff and a batch size';
    END IF;
    SELECT array_agg(id) INTO doomed FROM (
        SELECT id FROM sessions
        WHERE deleted_at IS NOT NULL AND deleted_at < before
        ORDER BY deleted_at
        LIMIT max_sessions
        FOR UPDATE SKIP LOCKED
    ) expired;
    purged_sessions := 0;
    purged_messages := 0;
    IF doomed IS NOT NULL THEN
        PERFORM set_config('clawgate.purge_before', before::TEXT, true);
        DELETE FROM messages WHERE session_id = ANY (doomed);
        GET DIAGNOSTICS purged_messages = ROW_COUNT;
        DELETE FROM sessions WHERE id = ANY (doomed);
        GET DIAGNOSTICS purged_sessions = ROW_COUNT;
        PERFORM set_config('clawgate.purge_before', '', true);
    END IF;
    RETURN NEXT;
END;
$$;
