//! The embedded log's tables, created at open.
//!
//! Not a sqlx migrator: sqlx takes no lock for SQLite migrations, so two services starting
//! at once could both apply the same one and one would fail. Instead every open runs the
//! whole schema, each statement idempotent (`IF NOT EXISTS`), in one `BEGIN IMMEDIATE`
//! transaction: the processes take turns, and the later ones change nothing. The version
//! goes in `PRAGMA user_version`; a later change adds its steps guarded by the version read
//! in that same transaction, and only additive ones, so an older release keeps working on
//! the same file.

use sqlx::SqlitePool;

/// The schema this code writes and reads.
const VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    // Every event, once: the message id is what de-duplicates. `seq` is AUTOINCREMENT so a
    // sequence number is never handed out twice, even if old events are one day pruned.
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        time_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS consumer_groups (
        name TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL
    )",
    // A group's filters: exact subjects, or a prefix followed by a `>` token.
    "CREATE TABLE IF NOT EXISTS consumer_subjects (
        consumer TEXT NOT NULL REFERENCES consumer_groups (name),
        filter TEXT NOT NULL,
        PRIMARY KEY (consumer, filter)
    )",
    // One row per event per group that receives it: the job. `available_ms` is when it may
    // next be claimed: the event's time at first, the end of the lease once claimed, now +
    // delay after a nak. `attempts` counts claims, and a claim's count is its lease token:
    // an answer only lands if nobody has claimed the row since.
    "CREATE TABLE IF NOT EXISTS deliveries (
        id INTEGER PRIMARY KEY,
        consumer TEXT NOT NULL REFERENCES consumer_groups (name),
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts INTEGER NOT NULL,
        available_ms INTEGER NOT NULL,
        UNIQUE (consumer, event_seq)
    )",
    // What a claim and an idle poll look at: only pending rows, so finished work costs the
    // index nothing.
    "CREATE INDEX IF NOT EXISTS deliveries_claimable
        ON deliveries (consumer, available_ms) WHERE state = 'pending'",
    // A copy of the event as it was given up on. AUTOINCREMENT: a replayed (deleted) dead
    // letter's id is never reused, so `meshctl dlq replay <id>` cannot hit a newer one.
    "CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
        consumer TEXT NOT NULL,
        subject TEXT NOT NULL,
        message_id TEXT NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        time_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS dead_letters_by_consumer ON dead_letters (consumer, id)",
];

/// Creates whatever is missing, in one write transaction.
pub(super) async fn create(write: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    if version < VERSION {
        // PRAGMA takes no bound parameters; VERSION is a constant.
        sqlx::query(&format!("PRAGMA user_version = {VERSION}"))
            .execute(&mut *tx)
            .await?;
    } else if version > VERSION {
        tracing::info!(
            version,
            ours = VERSION,
            "events.db was written by a newer release; its additions are left alone"
        );
    }
    tx.commit().await
}
