-- Sessions and their append-only transcripts. Every row carries tenant_id and user_id.
--
-- A session row has an internal id. Soft delete sets deleted_at; at most one live
-- (deleted_at IS NULL) row exists per (tenant_id, user_id, session_key), so a later
-- ensure with the same key starts a fresh session with a new id. Messages reference
-- the internal id, so a deleted session's transcript is kept and never mixed in.

CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    user_id              TEXT NOT NULL,
    session_key          TEXT NOT NULL,
    agent_id             TEXT NOT NULL DEFAULT '',
    label                TEXT NOT NULL DEFAULT '',
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    deleted_at           BIGINT,
    -- Number of transcript rows; equals the seq of the newest one.
    message_count        BIGINT NOT NULL DEFAULT 0,
    last_message_preview TEXT NOT NULL DEFAULT ''
);

CREATE UNIQUE INDEX sessions_live_key
    ON sessions (tenant_id, user_id, session_key) WHERE deleted_at IS NULL;
CREATE INDEX sessions_live_by_updated
    ON sessions (tenant_id, user_id, updated_at DESC) WHERE deleted_at IS NULL;

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    session_key TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content     TEXT NOT NULL,
    -- '' when the message belongs to no run.
    run_id      TEXT NOT NULL DEFAULT '',
    status      BIGINT NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    CONSTRAINT messages_session_seq UNIQUE (session_id, seq)
);

CREATE UNIQUE INDEX messages_run_role
    ON messages (session_id, run_id, role) WHERE run_id <> '';

-- The transcript is append-only, enforced by the database as well as the code.
CREATE FUNCTION messages_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'transcript messages are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER messages_no_update BEFORE UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_append_only();
