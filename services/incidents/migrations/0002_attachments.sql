-- Photos a responder attaches to an incident, kept beside it in PostgreSQL (at most 10 MB each,
-- checked as JPEG or PNG by their content before they are written). The bytes are stored out of
-- line (TOAST), so listing an incident's attachments reads no image.
CREATE TABLE incident_attachments (
    tenant        text        NOT NULL,
    id            text        NOT NULL,   -- a ULID
    incident_id   text        NOT NULL,
    content_type  text        NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png')),
    size          integer     NOT NULL CHECK (size > 0),
    width         integer     NOT NULL,
    height        integer     NOT NULL,
    sha256        text        NOT NULL,
    filename      text        NOT NULL DEFAULT '',
    added_by      text        NOT NULL,
    added_at      timestamptz NOT NULL,
    data          bytea       NOT NULL,
    PRIMARY KEY (tenant, id),
    FOREIGN KEY (tenant, incident_id) REFERENCES incidents (tenant, id),
    -- The same photo sent twice (a retry whose answer was lost) is one attachment.
    UNIQUE (tenant, incident_id, sha256)
);
-- JPEG and PNG are compressed already: compressing them again costs time and saves nothing.
ALTER TABLE incident_attachments ALTER COLUMN data SET STORAGE EXTERNAL;
