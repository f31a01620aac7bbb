-- The escalation service's tables: the endpoints incidents are delivered to, and the deliveries
-- themselves, one row per (incident change, endpoint), which is also the delivery's timer.

CREATE TABLE escalation_endpoints (
    tenant          text        NOT NULL,
    id              text        NOT NULL,   -- a ULID
    name            text        NOT NULL DEFAULT '',
    url             text        NOT NULL,
    format          text        NOT NULL,   -- json | cap
    language        text        NOT NULL,   -- ko | en
    sites           text[],                 -- NULL: every site of the tenant
    min_severity    text        NOT NULL,   -- CAP 1.2 severity
    types           text[],                 -- NULL: every incident type
    headers         jsonb       NOT NULL DEFAULT '{}',
    -- Standard Webhooks secrets (`whsec_` + base64). The key must be at hand to sign, so it is
    -- stored as given; the API shows it once, at creation or rotation.
    secret          text        NOT NULL,
    previous_secret text,                   -- still signed with until previous_until
    previous_until  timestamptz,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text        NOT NULL DEFAULT '',
    -- Circuit breaker: failed attempts in a row, and until when nothing is sent.
    failures        integer     NOT NULL DEFAULT 0,
    breaker_until   timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX escalation_endpoints_live ON escalation_endpoints (tenant) WHERE deleted_at IS NULL;

-- One delivery: one incident change to one endpoint. `id` is the `webhook-id`, derived from the
-- change and the endpoint, so a redelivered INCIDENTS message finds its row and adds none.
-- `due_at` is the timer: the next attempt while pending; while sending, the end of the sender's
-- lease, after which another worker takes it over (the sender died).
CREATE TABLE escalation_deliveries (
    id            text        PRIMARY KEY,
    seq           bigserial   NOT NULL,
    tenant        text        NOT NULL,
    endpoint_id   text        NOT NULL,
    incident_id   text        NOT NULL,
    site          text        NOT NULL,
    change        text        NOT NULL,   -- opened, acknowledged, resolved, ...
    event_type    text        NOT NULL,   -- org.safetyhub.incident.<change>.v1
    body          bytea       NOT NULL,   -- as sent, the same on every attempt
    content_type  text        NOT NULL,
    status        text        NOT NULL,   -- pending | sending | delivered | dead | cancelled
    attempts      integer     NOT NULL DEFAULT 0,
    due_at        timestamptz NOT NULL,
    claim         text,                   -- the sender holding it while sending
    created_at    timestamptz NOT NULL,   -- when the change happened
    delivered_at  timestamptz,
    last_status   integer,                -- the last answer's HTTP status, if any
    last_error    text        NOT NULL DEFAULT ''
);
CREATE INDEX escalation_deliveries_due ON escalation_deliveries (due_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX escalation_deliveries_due_per_endpoint ON escalation_deliveries (endpoint_id, due_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX escalation_deliveries_of_endpoint ON escalation_deliveries (tenant, endpoint_id, seq);
CREATE INDEX escalation_deliveries_of_incident ON escalation_deliveries (tenant, incident_id, seq);
