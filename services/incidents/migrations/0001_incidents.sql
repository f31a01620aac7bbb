-- The incidents service's system of record. The INCIDENTS stream carries the same changes for
-- consumers; these tables are what the API and a restarted service read.

-- Per site, what fusion remembers between batches besides its live incidents: the flood in
-- (or the latest, once ended) and the alarms waiting for a create-on-all rule. Its row lock orders the units of
-- work of one site (consumer batches and people's requests alike).
CREATE TABLE incident_sites (
    tenant       text        NOT NULL,
    site         text        NOT NULL,
    flood_id     text,
    flood_since  timestamptz,
    flood_until  timestamptz,             -- NULL while the flood lasts
    pending      jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant, site)
);

-- One row per incident. `body` is the fused incident (members, actions, counts) as the domain
-- has it; the columns beside it are what readers filter and sort on.
CREATE TABLE incidents (
    tenant         text             NOT NULL,
    id             text             NOT NULL,   -- a ULID stamped with the time it began
    site           text             NOT NULL,
    type           text             NOT NULL,   -- gas_release | fire | ... | alarm_flood
    status         text             NOT NULL,   -- open | acknowledged | dispatched | resolved | closed
    severity       text             NOT NULL,   -- CAP 1.2: Extreme | Severe | Moderate | Minor | Unknown
    severity_rank  smallint         NOT NULL,   -- 0 Unknown .. 4 Extreme, to sort by
    opened_at      timestamptz      NOT NULL,
    updated_at     timestamptz      NOT NULL,
    lat            double precision,
    lon            double precision,
    assignee       text             NOT NULL DEFAULT '',
    version        bigint           NOT NULL,   -- rises with every change: the ETag
    body           jsonb            NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX incidents_live ON incidents (tenant, site)
    WHERE status IN ('open', 'acknowledged', 'dispatched');
CREATE INDEX incidents_by_time ON incidents (tenant, opened_at DESC, id DESC);
CREATE INDEX incidents_by_status ON incidents (tenant, status, opened_at DESC, id DESC);

-- Every change, once: the id is derived from the change's cause, so a redelivered alarm or a
-- retried request cannot write a second entry.
CREATE TABLE incident_timeline (
    id           text        PRIMARY KEY,
    seq          bigserial   NOT NULL,
    tenant       text        NOT NULL,
    incident_id  text        NOT NULL,
    at           timestamptz NOT NULL,
    actor        text        NOT NULL,   -- 'system' for fusion; a token subject or API key id
    change       text        NOT NULL,
    what         text        NOT NULL,
    note         text        NOT NULL DEFAULT '',
    alarm_id     text,
    status       text        NOT NULL    -- the incident's status after the change
);
CREATE INDEX incident_timeline_of ON incident_timeline (tenant, incident_id, seq);
