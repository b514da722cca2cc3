-- Tenant and owner consistency between a message and its session, and the
-- retention purge as the only way rows are ever deleted. SQLite has no roles or
-- row-level security: the store's tenant filters isolate tenants here.

-- Rows always name a tenant; a message belongs to its session's tenant and user.
CREATE TRIGGER sessions_tenant_present BEFORE INSERT ON sessions
WHEN NEW.tenant_id = ''
BEGIN
    SELECT RAISE(ABORT, 'sessions need a tenant');
END;

CREATE TRIGGER messages_session_owner BEFORE INSERT ON messages
WHEN NEW.tenant_id = '' OR NOT EXISTS (
    SELECT 1 FROM sessions s
    WHERE s.id = NEW.session_id AND s.tenant_id = NEW.tenant_id AND s.user_id = NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'a message belongs to its session''s tenant and user');
END;

-- Admins list every user's sessions of their tenant; the purge finds old deletions.
CREATE INDEX sessions_live_tenant_by_updated
    ON sessions (tenant_id, updated_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX sessions_deleted_at ON sessions (deleted_at) WHERE deleted_at IS NOT NULL;

-- The cutoff of the purge running in the current write transaction: the purge
-- inserts its one row, deletes, and removes it again before committing, so no
-- other transaction ever sees a row here.
CREATE TABLE purge_window (
    before BIGINT NOT NULL
);

-- Messages are deleted only by the purge, with their session soft-deleted before
-- its cutoff; sessions likewise. Updates of messages stay refused (0001).
DROP TRIGGER messages_no_delete;

CREATE TRIGGER messages_no_delete BEFORE DELETE ON messages
WHEN NOT EXISTS (
    SELECT 1 FROM sessions s, purge_window w
    WHERE s.id = OLD.session_id AND s.deleted_at IS NOT NULL AND s.deleted_at < w.before)
BEGIN
    SELECT RAISE(ABORT, 'transcript messages are append-only');
END;

CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
WHEN NOT EXISTS (
    SELECT 1 FROM purge_window w
    WHERE OLD.deleted_at IS NOT NULL AND OLD.deleted_at < w.before)
BEGIN
    SELECT RAISE(ABORT, 'sessions are only deleted by the retention purge');
END;
