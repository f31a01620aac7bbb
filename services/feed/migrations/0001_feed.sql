-- The feed service: sharing policies (every version kept), what left for the city and under
-- which policy version, and the timers (delayed events, closing hours) as rows with a due time.

-- Every version of every site's policy; the highest version is in force. Never updated, so an
-- export's policy version always names what allowed it.
CREATE TABLE feed_policies (
    tenant      text        NOT NULL,
    site        text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    level       text        NOT NULL CHECK (level IN ('none', 'counts', 'redacted', 'full')),
    body        jsonb       NOT NULL,   -- the policy as written (level, fields, grid_m, delay_s)
    source      text        NOT NULL CHECK (source IN ('config', 'api')),
    set_by      text        NOT NULL,   -- the person or key, or 'config'
    set_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant, site, version)
);

-- One row per event that left on FEED (written in the unit of work that emits it).
CREATE TABLE feed_exports (
    seq             bigserial   PRIMARY KEY,
    event_id        text        NOT NULL UNIQUE,   -- the CloudEvent id (= Nats-Msg-Id)
    tenant          text        NOT NULL,
    site            text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('incident', 'alarm', 'kpi')),
    object_id       text        NOT NULL,          -- incident id, alarm event id, or zone of a kpi
    policy_version  integer     NOT NULL,
    level           text        NOT NULL,
    fields          text[]      NOT NULL,          -- the fields that left
    event_time      timestamptz NOT NULL,
    exported_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX feed_exports_by_site ON feed_exports (tenant, site, exported_at, seq);

-- Events a policy's delay holds back: projected now, they leave at `due` if the policy then in
-- force still lets every field of them leave.
CREATE TABLE feed_pending (
    event_id        text        PRIMARY KEY,
    tenant          text        NOT NULL,
    site            text        NOT NULL,
    kind            text        NOT NULL,
    object_id       text        NOT NULL,
    policy_version  integer     NOT NULL,
    level           text        NOT NULL,
    fields          text[]      NOT NULL,
    event_time      timestamptz NOT NULL,
    due             timestamptz NOT NULL,
    subject         text        NOT NULL,
    payload         bytea       NOT NULL,
    headers         jsonb       NOT NULL
);
CREATE INDEX feed_pending_due ON feed_pending (due);

-- Hourly counts per zone of the sites whose policy shares counts, and one due row per site-hour:
-- when it falls due the hour's counts leave as `kpi` events.
CREATE TABLE feed_counts (
    tenant      text        NOT NULL,
    site        text        NOT NULL,
    hour        timestamptz NOT NULL,
    zone        text        NOT NULL,   -- '' for what no zone holds
    incidents   integer     NOT NULL DEFAULT 0,
    alarms      integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, site, hour, zone)
);
CREATE TABLE feed_count_hours (
    tenant      text        NOT NULL,
    site        text        NOT NULL,
    hour        timestamptz NOT NULL,
    due         timestamptz NOT NULL,
    PRIMARY KEY (tenant, site, hour)
);
CREATE INDEX feed_count_hours_due ON feed_count_hours (due);

-- Shared incidents waiting to be upserted to the NGSI-LD context broker, written with their
-- export: a broker that is down delays them (due moves on), never loses them.
CREATE TABLE feed_ngsi_pending (
    seq         bigserial   PRIMARY KEY,
    entity_id   text        NOT NULL,   -- urn:ngsi-ld:Alert:<incident id>
    tenant      text        NOT NULL,
    site        text        NOT NULL,
    entity      jsonb       NOT NULL,
    due         timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text        NOT NULL DEFAULT ''
);
CREATE INDEX feed_ngsi_pending_due ON feed_ngsi_pending (due, seq);

-- What the broker refused (4xx): kept with its answer for a person to look at.
CREATE TABLE feed_ngsi_dead (
    seq         bigint      PRIMARY KEY,
    entity_id   text        NOT NULL,
    tenant      text        NOT NULL,
    site        text        NOT NULL,
    entity      jsonb       NOT NULL,
    status      integer     NOT NULL,
    answer      text        NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
