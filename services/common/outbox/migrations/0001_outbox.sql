-- The outbox: messages a service committed and has not yet seen stored by JetStream.
-- A row is written in the same transaction as the state change it announces and deleted once
-- JetStream acknowledged it, so the table holds exactly what is still to publish. `seq` gives the
-- order (per service, and so per subject); `message_id` is the Nats-Msg-Id that makes a repeated
-- publish (a relay that crashed between publish and delete) a duplicate JetStream drops.
CREATE TABLE outbox (
    seq        bigserial   PRIMARY KEY,
    service    text        NOT NULL,
    message_id text        NOT NULL UNIQUE,
    subject    text        NOT NULL,
    payload    bytea       NOT NULL,
    headers    jsonb       NOT NULL,
    -- Written at the end of the transaction, so this is the commit time to within a round trip.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_service_seq ON outbox (service, seq);

-- Messages a consumer has processed, for handlers whose effects are not idempotent by a key of
-- their own: recorded in the handler's transaction, so a redelivery after commit (a crash before
-- the ack) is recognised and skipped. Rows older than any possible redelivery are purged.
CREATE TABLE processed_messages (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    service      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX processed_messages_service_time ON processed_messages (service, processed_at);
