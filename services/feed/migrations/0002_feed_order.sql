-- The last version of each incident the feed has decided on (sent, queued behind a delay, or
-- withheld by the policy), written in the unit of work that emits the event: a change older than
-- it arriving late is dropped, so the city never sees an incident's older state after a newer one.
CREATE TABLE feed_incident_versions (
    tenant       text        NOT NULL,
    incident_id  text        NOT NULL,
    version      bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant, incident_id)
);

-- Which leadership term consumes (a token per term), and whether it has given back what it held
-- (released): the next leader starts its consumers only then, so the messages the one before
-- held are delivered to it before anything newer. One row.
CREATE TABLE feed_handover (
    id        boolean     PRIMARY KEY DEFAULT true CHECK (id),
    holder    text        NOT NULL,
    released  boolean     NOT NULL,
    since     timestamptz NOT NULL DEFAULT clock_timestamp()
);
