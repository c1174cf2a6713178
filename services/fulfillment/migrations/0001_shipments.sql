-- Fulfillment's own records. Portable SQL: runs unchanged on SQLite and PostgreSQL.

-- One order's shipment, from its ShipmentRequested on.
CREATE TABLE shipments (
    shipment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('AWAITING_PAYMENT', 'SHIPPED', 'FAILED', 'CANCELLED')),
    tracking_number TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    -- The only part of the address the API shows.
    region_code TEXT NOT NULL,
    create_time_ms BIGINT NOT NULL,
    update_time_ms BIGINT NOT NULL
);
CREATE INDEX shipments_by_time ON shipments (create_time_ms, shipment_id);

CREATE TABLE shipment_lines (
    shipment_id TEXT NOT NULL REFERENCES shipments (shipment_id),
    product_id TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (shipment_id, product_id)
);

-- Where a shipment goes: read only to hand it to the carrier, never by the API.
CREATE TABLE shipment_addresses (
    shipment_id TEXT PRIMARY KEY REFERENCES shipments (shipment_id),
    recipient TEXT NOT NULL,
    locality TEXT NOT NULL,
    postal_code TEXT NOT NULL
);

CREATE TABLE shipment_address_lines (
    shipment_id TEXT NOT NULL REFERENCES shipments (shipment_id),
    position BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (shipment_id, position)
);

-- What fulfillment has heard about an order besides its ShipmentRequested, whichever came
-- first: that it was paid, that it failed. Every handler writes this row first, so two
-- events of one order are applied one after the other, each seeing the other's effect.
CREATE TABLE order_progress (
    order_id TEXT PRIMARY KEY,
    paid_time_ms BIGINT,
    failed_time_ms BIGINT,
    update_time_ms BIGINT NOT NULL
);
