CREATE TABLE toy_notes (
    id   bigserial PRIMARY KEY,
    text text NOT NULL
);
