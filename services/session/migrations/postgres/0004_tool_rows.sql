-- Tool loops: a run writes several assistant rows (one per model step) and a
-- tool row per tool call, told apart by `part`; `tools` holds an assistant
-- row's tool calls or a tool row's call id, name and outcome (JSON, '' when
-- the row has none).
ALTER TABLE messages ADD COLUMN part BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN tools TEXT NOT NULL DEFAULT '';

DROP INDEX messages_run_role;
CREATE UNIQUE INDEX messages_run_role_part
    ON messages (session_id, run_id, role, part) WHERE run_id <> '';
