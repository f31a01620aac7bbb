-- Observation history, partitioned by day of observation time.
-- (id, time) is unique: redelivered messages and re-posted observations are stored once.
CREATE TABLE observations (
    id         text             NOT NULL,
    time       timestamptz      NOT NULL,
    tenant     text             NOT NULL,
    site       text             NOT NULL,
    device     text             NOT NULL,
    kind       text             NOT NULL,
    value      double precision,
    unit       text             NOT NULL DEFAULT '',
    quality    smallint         NOT NULL DEFAULT 0,
    confidence double precision,
    snapshot   text,
    detail     jsonb,            -- box, position, attributes: present on detections, rare on readings
    received   timestamptz      NOT NULL,
    stored     timestamptz      NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (id, time)
) PARTITION BY RANGE (time);

-- Days without a partition of their own (late backfill beyond the window kept ready) land here.
CREATE TABLE observations_default PARTITION OF observations DEFAULT;

CREATE INDEX observations_site_time ON observations (site, time DESC, id DESC);
CREATE INDEX observations_device_time ON observations (site, device, kind, time DESC, id DESC);
