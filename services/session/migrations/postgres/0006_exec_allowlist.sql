-- The commands an agent's `exec` calls may run without asking (a JSON array
-- of exact command lines): added by `allow-always` decisions.
ALTER TABLE agents ADD COLUMN exec_allowlist TEXT NOT NULL DEFAULT '[]';
