-- Who did what, why, when and from where: operator actions, key and token changes. Rows are only
-- ever inserted (an audit trail that can be edited proves nothing); written in the same
-- transaction as the change they record, so there is no change without its row and no row
-- without its change.
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    tenant      text,                    -- NULL: not of one tenant
    actor       text        NOT NULL,    -- a person's subject, a key id, or the operating-system user of a command
    actor_kind  text        NOT NULL CHECK (actor_kind IN ('person', 'key', 'command')),
    action      text        NOT NULL,    -- e.g. key.created, token.issued, alarm.acknowledged
    target      text,                    -- what was acted on: a key id, an alarm id, a person
    reason      text        NOT NULL DEFAULT '',
    source      text,                    -- the client address, or the host a command ran on
    request_id  text,                    -- the request or correlation id that caused it
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant, at);
CREATE INDEX audit_log_target ON audit_log (target) WHERE target IS NOT NULL;
