-- The hub's own key for people's tokens (`safetyhub tokens issue`): an HS256 secret, made once.
-- Kept here rather than in a file so every worker and every `run` process of one deployment
-- verifies the tokens without sharing a file; whoever can write this database can already make
-- API keys, so it holds no power the key table does not.
CREATE TABLE hub_signing_keys (
    kid        text        PRIMARY KEY,
    secret     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
-- One current key at a time.
CREATE UNIQUE INDEX hub_signing_keys_current ON hub_signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
