-- The event tables every service's own database has, beside its own: the outbox (events
-- committed with the change they report, waiting for the relay) and the inbox (events a
-- consumer group has applied, recorded with their effect). Portable SQL: runs unchanged on
-- SQLite and PostgreSQL. Versions from 1000000001 on, so they never meet a service's own
-- (which count from 0001).

CREATE TABLE event_outbox (
    event_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    -- The message headers, as a JSON object of strings (the trace context).
    headers TEXT NOT NULL,
    payload BYTEA NOT NULL,
    create_time_ms BIGINT NOT NULL,
    -- NULL until the relay has had the broker store it.
    publish_time_ms BIGINT
);
CREATE INDEX event_outbox_unpublished ON event_outbox (publish_time_ms, create_time_ms);

CREATE TABLE event_inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    process_time_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
