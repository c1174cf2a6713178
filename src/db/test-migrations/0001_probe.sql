-- For src/db.rs's tests: a migration that runs on both backends, through every connection kind.
CREATE TABLE probe (
    id    BIGINT PRIMARY KEY,
    label TEXT   NOT NULL
);
