-- Payments' own records, and the simulated provider's ledger beside them. Portable SQL:
-- runs unchanged on SQLite and PostgreSQL.

-- One order's charge, once its outcome is settled. One per order: the order id is also the
-- provider's idempotency key, so an order can never be charged twice.
CREATE TABLE charges (
    charge_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    currency_code TEXT NOT NULL,
    amount_units BIGINT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('SUCCEEDED', 'DECLINED', 'FAILED')),
    failure_reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- The brand the provider reported; the card token itself is never stored.
    card_brand TEXT NOT NULL,
    create_time_ms BIGINT NOT NULL,
    update_time_ms BIGINT NOT NULL
);
CREATE INDEX charges_by_time ON charges (create_time_ms, charge_id);

-- The attempts that failed transiently while an order's charge was not settled yet: each
-- reported once by a PaymentFailed (will_retry), and the first one dates the charge.
CREATE TABLE failed_charge_attempts (
    order_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    reason TEXT NOT NULL,
    fail_time_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, attempt)
);

-- A refund of the whole of one succeeded charge; at most one per charge.
CREATE TABLE refunds (
    refund_id TEXT PRIMARY KEY,
    charge_id TEXT NOT NULL UNIQUE REFERENCES charges (charge_id),
    order_id TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_units BIGINT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    reason TEXT NOT NULL,
    create_time_ms BIGINT NOT NULL
);
CREATE INDEX refunds_by_time ON refunds (create_time_ms, refund_id);
CREATE INDEX refunds_by_order ON refunds (order_id);

-- The simulated provider's side (src/provider.rs), as an outside system would keep it:
-- written in transactions of its own, never in payments'. One row per idempotency key,
-- with how often it was called and, once it answered, what.
CREATE TABLE provider_charges (
    -- The order id.
    idempotency_key TEXT PRIMARY KEY,
    calls BIGINT NOT NULL,
    -- NULL until the provider gave an answer; then 'approved' or 'declined' for good.
    outcome TEXT CHECK (outcome IN ('approved', 'declined')),
    reason TEXT NOT NULL,
    card_brand TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_units BIGINT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    create_time_ms BIGINT NOT NULL,
    update_time_ms BIGINT NOT NULL
);

CREATE TABLE provider_refunds (
    -- The charge id.
    idempotency_key TEXT PRIMARY KEY,
    calls BIGINT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_units BIGINT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    create_time_ms BIGINT NOT NULL,
    update_time_ms BIGINT NOT NULL
);
