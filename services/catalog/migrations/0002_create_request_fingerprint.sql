-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Additive only (expand).
-- A digest of the CreateProduct request that made the row, so the same request_id coming
-- back with another payload is told apart from a retry. NULL for rows made before.
ALTER TABLE products ADD COLUMN create_request_fingerprint TEXT;
