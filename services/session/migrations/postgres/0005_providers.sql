-- The model providers of each tenant: where its agents' models are served.
-- `models` is a JSON array of strings; the API key is the tenant secret named
-- by `api_key_secret` (kept sealed by the auth service), never stored here.
CREATE TABLE providers (
    tenant_id      TEXT NOT NULL CHECK (tenant_id <> ''),
    provider_id    TEXT NOT NULL CHECK (provider_id <> ''),
    kind           TEXT NOT NULL,
    base_url       TEXT NOT NULL,
    models         TEXT NOT NULL DEFAULT '[]',
    api_key_secret TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider_id)
);

-- Only rows of the transaction's tenant, as for every tenant table.
ALTER TABLE providers ENABLE ROW LEVEL SECURITY;
CREATE POLICY providers_tenant ON providers
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
