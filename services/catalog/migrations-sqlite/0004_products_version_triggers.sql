-- SQLite only (triggers have no portable syntax); migrations-postgres/ holds the same
-- version for PostgreSQL. Every row a statement adds, changes or removes in products raises
-- products_version in that statement's transaction.
CREATE TRIGGER products_version_after_insert AFTER INSERT ON products
BEGIN
    UPDATE products_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER products_version_after_update AFTER UPDATE ON products
BEGIN
    UPDATE products_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER products_version_after_delete AFTER DELETE ON products
BEGIN
    UPDATE products_version SET version = version + 1 WHERE id = 1;
END;
