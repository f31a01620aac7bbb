-- JPEG snapshots of the video service's detections: the frame as taken, and a copy with the faces
-- blurred (what may ever leave the tenant). An observation carries only the reference.
CREATE TABLE video_snapshots (
    ref      text        PRIMARY KEY,
    tenant   text        NOT NULL,
    site     text        NOT NULL,
    device   text        NOT NULL,
    taken    timestamptz NOT NULL,
    jpeg     bytea       NOT NULL,
    blurred  bytea       NOT NULL,
    faces    integer     NOT NULL,
    stored   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX video_snapshots_taken ON video_snapshots (taken);
