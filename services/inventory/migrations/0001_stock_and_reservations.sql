-- Portable SQL: runs unchanged on SQLite and PostgreSQL.

-- Units available to reserve, and units held by active reservations, per product.
CREATE TABLE stock (
    product_id     TEXT    PRIMARY KEY,
    available      BIGINT  NOT NULL CHECK (available >= 0),
    reserved       BIGINT  NOT NULL CHECK (reserved >= 0),
    update_time_ms BIGINT  NOT NULL
);

-- Adjustments applied, by the caller's request_id, so a retried adjustment applies once.
CREATE TABLE stock_adjustments (
    request_id     TEXT    PRIMARY KEY,
    product_id     TEXT    NOT NULL,
    delta          BIGINT  NOT NULL,
    create_time_ms BIGINT  NOT NULL
);

-- Reservations, keyed by the caller's id, so a retried reservation holds stock once.
CREATE TABLE reservations (
    reservation_id TEXT    PRIMARY KEY,
    state          TEXT    NOT NULL CHECK (state IN ('ACTIVE', 'RELEASED', 'COMMITTED')),
    create_time_ms BIGINT  NOT NULL,
    update_time_ms BIGINT  NOT NULL
);

CREATE TABLE reservation_items (
    reservation_id TEXT    NOT NULL REFERENCES reservations (reservation_id),
    product_id     TEXT    NOT NULL,
    quantity       BIGINT  NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);
