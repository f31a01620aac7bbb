-- API keys for machines (gateways, integrations) and, until JWT login exists, people.
-- Only a SHA-256 of the secret is kept: keys are 256-bit random, so a slow hash adds nothing.
CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY,
    secret_hash bytea       NOT NULL,
    tenant      text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('gateway', 'viewer', 'responder', 'operator', 'admin', 'platform')),
    sites       text[],                      -- NULL: every site of the tenant
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);
