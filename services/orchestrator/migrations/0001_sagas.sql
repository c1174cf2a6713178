-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Flags are 0 or 1 in BIGINT
-- columns, which both read the same way through sqlx's Any driver.

-- One saga per order, created by whichever of the order's events arrives first.
CREATE TABLE sagas (
    order_id         TEXT    PRIMARY KEY,
    state            TEXT    NOT NULL,
    paid             BIGINT  NOT NULL,
    shipped          BIGINT  NOT NULL,
    charge_id        TEXT    NOT NULL,
    failure_reason   TEXT    NOT NULL,
    refund_requested BIGINT  NOT NULL,
    create_time_ms   BIGINT  NOT NULL,
    update_time_ms   BIGINT  NOT NULL
);

CREATE INDEX sagas_by_time ON sagas (create_time_ms, order_id);
CREATE INDEX sagas_by_state ON sagas (state, create_time_ms, order_id);

-- What happened in each saga, in order (seq from 1 per saga).
CREATE TABLE saga_steps (
    order_id       TEXT    NOT NULL REFERENCES sagas (order_id),
    seq            BIGINT  NOT NULL,
    description    TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    create_time_ms BIGINT  NOT NULL,
    PRIMARY KEY (order_id, seq)
);
