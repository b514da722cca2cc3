-- The agents of each tenant: who answers in the sessions whose key names them.
-- A tenant's default agent has a row only once it was changed; lists of names
-- (fallbacks, tools) are JSON arrays of strings.
CREATE TABLE agents (
    tenant_id      TEXT NOT NULL CHECK (tenant_id <> ''),
    agent_id       TEXT NOT NULL CHECK (agent_id <> ''),
    name           TEXT NOT NULL DEFAULT '',
    emoji          TEXT NOT NULL DEFAULT '',
    avatar         TEXT NOT NULL DEFAULT '',
    workspace      TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    fallbacks      TEXT NOT NULL DEFAULT '[]',
    system_prompt  TEXT NOT NULL DEFAULT '',
    tools          TEXT NOT NULL DEFAULT '[]',
    max_tool_steps BIGINT NOT NULL,
    timeout_ms     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
