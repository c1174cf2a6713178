-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Additive only (expand).
-- One number that every change to products raises in the change's own transaction (the
-- triggers of migrations-sqlite/ and migrations-postgres/, whichever release or tool made
-- the change): each catalog replica reads it to know when its cache of products must go.
CREATE TABLE products_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO products_version (id, version) VALUES (1, 0);
