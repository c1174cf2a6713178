-- Portable SQL: runs unchanged on SQLite and PostgreSQL.

-- Whose each order is, from its OrderCreated: the later events of an order do not say.
CREATE TABLE order_customers (
    order_id       TEXT    PRIMARY KEY,
    customer_id    TEXT    NOT NULL,
    create_time_ms BIGINT  NOT NULL
);

-- The messages written to customers: one per order and kind, whatever the broker
-- redelivers (the inbox keeps an event from applying twice; this keeps two events of one
-- kind, say a second ShipmentCreated, from writing two messages).
CREATE TABLE notifications (
    notification_id TEXT    PRIMARY KEY,
    customer_id     TEXT    NOT NULL,
    order_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    create_time_ms  BIGINT  NOT NULL,
    UNIQUE (order_id, kind)
);

-- A customer's notifications, newest first, of all their orders or of one.
CREATE INDEX notifications_by_customer
    ON notifications (customer_id, create_time_ms, notification_id);
CREATE INDEX notifications_by_customer_order
    ON notifications (customer_id, order_id, create_time_ms, notification_id);
