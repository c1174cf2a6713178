-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Additive only (expand): the code of
-- the previous release keeps working against these tables, so v1 and v2 share a database.

-- Keyed stock changes: which kind (ADJUST adds `delta`; SET makes `delta` the available
-- quantity) and what the change answered, so a replay returns that answer unchanged.
-- Rows written before this migration have no result and replay the current stock.
ALTER TABLE stock_adjustments ADD COLUMN kind TEXT NOT NULL DEFAULT 'ADJUST';
ALTER TABLE stock_adjustments ADD COLUMN result_available BIGINT;
ALTER TABLE stock_adjustments ADD COLUMN result_reserved BIGINT;
ALTER TABLE stock_adjustments ADD COLUMN result_update_time_ms BIGINT;

-- When an ACTIVE reservation gives its stock back unless it is committed or released
-- first (NULL: never, for reservations made before this migration), and why a released
-- reservation was released ('EXPIRED', or NULL when its owner released it).
ALTER TABLE reservations ADD COLUMN expire_time_ms BIGINT;
ALTER TABLE reservations ADD COLUMN close_reason TEXT;
CREATE INDEX reservations_by_expiry ON reservations (state, expire_time_ms);
