-- The alarm engine's system of record. The ALARMS stream carries the same transitions for
-- consumers; these tables are what the API, the KPIs and a restarted engine read.

-- One row per alarm point (one rule on one device, or one voting group's confirmed alarm).
-- The engine's working state of the point (condition, state machine, chatter window) is kept
-- encoded in `engine_state`; the columns beside it are what readers filter and show.
CREATE TABLE alarm_points (
    tenant        text        NOT NULL,
    site          text        NOT NULL,
    alarm_id      text        NOT NULL,   -- '<device>--<rule>' (PointId.alarm_id); a group: '<group>--<rule>'
    device        text        NOT NULL,   -- a device id, or the voting group's id
    rule_id       text        NOT NULL,
    condition     text        NOT NULL,   -- ConditionType value
    priority      text        NOT NULL,   -- low | medium | high | emergency
    alarm_class   text        NOT NULL,   -- safety | process | equipment | system
    state         text        NOT NULL DEFAULT 'NORM',  -- AlarmState shown
    active        boolean     NOT NULL DEFAULT false,   -- the condition, tracked under overlays too
    latched       boolean     NOT NULL DEFAULT false,
    shelved_until timestamptz,
    flags         text[]      NOT NULL DEFAULT '{}',    -- chattering, fleeting, confirmed, ...
    changed_at    timestamptz,                          -- time of the last transition
    due           timestamptz,                          -- the earliest pending timer, if any
    engine_state  bytea,
    PRIMARY KEY (tenant, site, alarm_id)
);
CREATE INDEX alarm_points_due ON alarm_points (due) WHERE due IS NOT NULL;
CREATE INDEX alarm_points_shown ON alarm_points (tenant, site, state) WHERE state <> 'NORM';

-- Every transition, once (its id is derived from point, new state, time and cause).
CREATE TABLE alarm_transitions (
    id              text        PRIMARY KEY,
    seq             bigserial   NOT NULL,
    tenant          text        NOT NULL,
    site            text        NOT NULL,
    alarm_id        text        NOT NULL,
    rule_id         text        NOT NULL,
    priority        text        NOT NULL,
    alarm_class     text        NOT NULL,
    at              timestamptz NOT NULL,
    old_state       text        NOT NULL,
    new_state       text        NOT NULL,
    active          boolean     NOT NULL,
    observation_ids text[]      NOT NULL DEFAULT '{}',
    timer           text,                 -- on_delay | off_delay | stale | detection_window | shelve_expiry
    actor           text,                 -- the person (or key) of an operator action
    action          text,                 -- ack | shelve | unshelve | suppress | unsuppress | out_of_service | return_to_service
    reason          text        NOT NULL DEFAULT '',
    flags           text[]      NOT NULL DEFAULT '{}',
    -- What the transition counts for in the ISA-18.2 figures (domain/facts.py).
    activation      boolean     NOT NULL DEFAULT false,
    reannunciation  boolean     NOT NULL DEFAULT false,
    returned        boolean     NOT NULL DEFAULT false,
    ack_latency_ms  bigint,
    entered_overlay text
);
CREATE INDEX alarm_transitions_site_at ON alarm_transitions (tenant, site, at);
CREATE INDEX alarm_transitions_alarm ON alarm_transitions (tenant, site, alarm_id, at);

-- Floods per site: a row when one begins, closed when it ends.
CREATE TABLE alarm_floods (
    tenant      text        NOT NULL,
    site        text        NOT NULL,
    began_at    timestamptz NOT NULL,
    ended_at    timestamptz,
    activations integer     NOT NULL DEFAULT 0,  -- from its beginning to its end (or now)
    PRIMARY KEY (tenant, site, began_at)
);
CREATE INDEX alarm_floods_open ON alarm_floods (tenant, site) WHERE ended_at IS NULL;

-- The engine's flood detector per site (recent activation times, the flood in progress), and the
-- site's lock: a unit of work that evaluates or fires timers of a site locks this row first, then
-- the site's points, so two workers never interleave on one site and never deadlock.
CREATE TABLE alarm_sites (
    tenant       text        NOT NULL,
    site         text        NOT NULL,
    engine_state bytea,
    due          timestamptz,            -- when the flood in progress ends unless more alarms come
    PRIMARY KEY (tenant, site)
);
CREATE INDEX alarm_sites_due ON alarm_sites (due) WHERE due IS NOT NULL;
