-- Escalation policies, and each incident's climb up its policy's steps. A climb's row is its
-- timer: `due_at` is its next notification (NULL once the climb is over).

CREATE TABLE escalation_policies (
    tenant         text        NOT NULL,
    id             text        NOT NULL,   -- a ULID
    name           text        NOT NULL DEFAULT '',
    position       integer     NOT NULL,   -- tried in this order; the first that takes an incident wins
    sites          text[],                 -- NULL: every site
    types          text[],                 -- NULL: every incident type
    min_severity   text        NOT NULL,
    ack_deadlines  jsonb       NOT NULL DEFAULT '{}',   -- severity -> seconds
    steps          jsonb       NOT NULL,   -- [{endpoints, waitS, repeat, next}]
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE escalation_climbs (
    tenant       text        NOT NULL,
    incident_id  text        NOT NULL,
    site         text        NOT NULL,
    policy_id    text        NOT NULL,
    step         integer     NOT NULL,
    round        integer     NOT NULL,
    due_at       timestamptz,
    stopped      text        NOT NULL DEFAULT '',   -- acknowledged, resolved, top, policy gone
    severity     text        NOT NULL,
    -- The latest change of the incident (an IncidentChange): each notification shows the
    -- incident as it is now, not as it was when the climb began.
    version      bigint      NOT NULL,
    latest       bytea       NOT NULL,
    PRIMARY KEY (tenant, incident_id)
);
CREATE INDEX escalation_climbs_due ON escalation_climbs (due_at) WHERE due_at IS NOT NULL;
