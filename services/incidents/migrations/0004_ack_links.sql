-- Acknowledgement links used (GET/POST /v1/ack/{token}): one row per link's token id (`jti`),
-- written in the same transaction as the acknowledgement it made, so a link acknowledges once
-- and a second use is told who used it and when. A link never used leaves no row; a link that
-- found its incident acknowledged already consumes nothing.
CREATE TABLE incident_ack_links (
    jti          text        PRIMARY KEY,
    tenant       text        NOT NULL,
    incident_id  text        NOT NULL,
    endpoint_id  text        NOT NULL,
    used_by      text        NOT NULL,   -- the timeline's actor: link:<endpoint>
    used_at      timestamptz NOT NULL,
    source       text,                   -- the client address that used it
    FOREIGN KEY (tenant, incident_id) REFERENCES incidents (tenant, id)
);
