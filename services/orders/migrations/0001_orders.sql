-- Portable SQL: runs unchanged on SQLite and PostgreSQL.

-- One row per order. The id is derived from (customer_id, request_id), so every attempt of
-- one CreateOrder call, on any replica, inserts the same key: the first one stores the
-- order, the others find it.
CREATE TABLE orders (
    order_id             TEXT    PRIMARY KEY,
    customer_id          TEXT    NOT NULL,
    -- The CreateOrder call's idempotency key, and a digest of what it asked for, so the
    -- key coming back with another request is told apart from a retry.
    request_id           TEXT    NOT NULL,
    request_fingerprint  TEXT    NOT NULL,
    state                TEXT    NOT NULL
        CHECK (state IN ('PENDING', 'PAID', 'SHIPPED', 'COMPLETED', 'FAILED')),
    failure_reason       TEXT    NOT NULL,
    currency_code        TEXT    NOT NULL,
    total_units          BIGINT  NOT NULL,
    total_nanos          BIGINT  NOT NULL,
    recipient            TEXT    NOT NULL,
    -- A JSON array of 1 to 3 strings.
    address_lines        TEXT    NOT NULL,
    locality             TEXT    NOT NULL,
    postal_code          TEXT    NOT NULL,
    region_code          TEXT    NOT NULL,
    -- The encoded CreateOrderResponse the first call answered: what every retry answers.
    create_reply         BYTEA   NOT NULL,
    create_time_ms       BIGINT  NOT NULL,
    update_time_ms       BIGINT  NOT NULL
);
-- ListOrders: a customer's orders, newest first, by keyset.
CREATE INDEX orders_by_customer ON orders (customer_id, create_time_ms, order_id);

-- What was ordered, in the order of the request, at the prices of that moment.
CREATE TABLE order_lines (
    order_id       TEXT    NOT NULL REFERENCES orders (order_id),
    line_number    BIGINT  NOT NULL,
    product_id     TEXT    NOT NULL,
    quantity       BIGINT  NOT NULL CHECK (quantity > 0),
    currency_code  TEXT    NOT NULL,
    unit_units     BIGINT  NOT NULL,
    unit_nanos     BIGINT  NOT NULL,
    PRIMARY KEY (order_id, line_number)
);

-- Every state an order has been in, once each, with the time the service that caused it
-- recorded (the event's event_time; the order's own creation for PENDING).
CREATE TABLE order_history (
    order_id  TEXT    NOT NULL REFERENCES orders (order_id),
    state     TEXT    NOT NULL
        CHECK (state IN ('PENDING', 'PAID', 'SHIPPED', 'COMPLETED', 'FAILED')),
    time_ms   BIGINT  NOT NULL,
    reason    TEXT    NOT NULL,
    PRIMARY KEY (order_id, state)
);
