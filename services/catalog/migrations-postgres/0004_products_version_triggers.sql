-- PostgreSQL only (triggers have no portable syntax); migrations-sqlite/ holds the same
-- version for SQLite. Every statement that adds, changes or removes rows of products, or
-- empties it, raises products_version in that statement's transaction.
CREATE FUNCTION products_version_raise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER products_version_raise
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_version_raise();
