-- Maintenance windows: while one of a site's (or a zone's) windows is on, non-safety incidents
-- there are not notified. Each window's row is also the timer of its reminder before expiry.

CREATE TABLE escalation_maintenance_windows (
    tenant          text        NOT NULL,
    id              text        NOT NULL,   -- a ULID
    site            text        NOT NULL,
    zone            text,                   -- NULL: the whole site
    "window"        jsonb       NOT NULL,   -- the window as the domain reads it (id, site, zone, timezone, schedule, reason)
    reminder_lead_s double precision NOT NULL DEFAULT 900,
    -- The reminder's timer: when the next one is due (NULL: none within the horizon), and the end
    -- of the occurrence last reminded of, so each occurrence's reminder is sent once.
    remind_at       timestamptz,
    reminded_until  timestamptz,
    created_by      text        NOT NULL,
    updated_by      text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX escalation_maintenance_windows_of_site ON escalation_maintenance_windows (tenant, site);
CREATE INDEX escalation_maintenance_windows_remind ON escalation_maintenance_windows (remind_at)
    WHERE remind_at IS NOT NULL;

-- An incident whose notifications a window held back: the timer that looks again when the muting
-- may end (`due_at`), and then notifies the incident if it is still open and unacknowledged.
CREATE TABLE escalation_held (
    tenant       text        NOT NULL,
    incident_id  text        NOT NULL,
    site         text        NOT NULL,
    zones        text[]      NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, incident_id)
);
CREATE INDEX escalation_held_due ON escalation_held (due_at);
