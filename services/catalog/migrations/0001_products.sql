-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE products (
    product_id        TEXT    PRIMARY KEY,
    display_name      TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    currency_code     TEXT    NOT NULL,
    price_units       BIGINT  NOT NULL,
    price_nanos       BIGINT  NOT NULL,
    -- The request_id of the CreateProduct call that made the row, so a retry finds it.
    create_request_id TEXT    UNIQUE,
    create_time_ms    BIGINT  NOT NULL,
    update_time_ms    BIGINT  NOT NULL
);
