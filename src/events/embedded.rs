//! The event log in one SQLite file, for one machine: every service process of
//! `meshctl up` opens the same `$DATA_DIR/events.db`, and SQLite's file locks in WAL mode
//! keep them apart. Shaped like a job queue (Oban, Solid Queue):
//!
//! - `events`: each event once, unique by message id, so a second publish of the same id
//!   stores nothing and answers [`Published::Duplicate`].
//! - `consumer_groups` and `consumer_subjects`: the durable groups and their filters.
//! - `deliveries`: one row per event per group that receives it, written when the event is
//!   published, or, for a group created later, when the group is (so a new group starts
//!   from the first event, as a JetStream consumer with `DeliverPolicy::All` does).
//! - `dead_letters`: what a group gave up on, with the error and the attempts.
//!
//! A member claims a delivery with one `UPDATE ... RETURNING` (the write lock makes it
//! atomic across processes), which sets a lease of `ack_wait` and counts the attempt. An
//! ack marks the row done, a nak makes it available after the delay, and a lease that runs
//! out makes it claimable again, by any member, as the next attempt.
//!
//! Durability: `synchronous = NORMAL` in WAL mode. A commit is in the WAL file, in the
//! operating system's hands, before `publish` returns, so killing any process (SIGKILL
//! included) loses nothing that was acknowledged; a power cut or kernel crash may lose the
//! last commits, as it may for the services' own SQLite files, which use the same setting,
//! and as it may for JetStream with its default (periodic) fsync. `FULL` would fsync every
//! commit, a few milliseconds each on ordinary disks, on every hop of the order flow.

use std::{path::PathBuf, sync::Arc, time::Duration};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    ConsumerConfig, DeadLetter, Delivery, EventBus, Headers, Outgoing, Published, validate,
};
use crate::{
    Error, Result,
    db::{OpenLock, now_millis},
};

mod delivery;
mod schema;
mod watch;

pub use delivery::EmbeddedConsumer;
use delivery::EmbeddedReply;

/// Where the log is and how it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The SQLite file; its folder is created if missing.
    pub path: PathBuf,
    /// How long a write waits for the file's write lock, held by another process.
    pub busy_timeout: Duration,
    /// How often a process looks for commits by other processes while the file is busy.
    /// See [`EmbeddedConfig::DEFAULT_POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// How often it looks once nothing has changed for a couple of seconds.
    pub idle_poll_interval: Duration,
}

impl EmbeddedConfig {
    /// A publish is part of a call (an order placed, a payment taken), so it gives up, and
    /// the call answers UNAVAILABLE, before the mesh's route timeouts would: the same bound,
    /// for the same reason, as `DATABASE_BUSY_TIMEOUT_MS`. Writes here are a few rows each,
    /// so the lock is held for well under a millisecond at a time.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(1000);
    /// Events published by another process are seen only by polling; a process's own
    /// publishes wake its consumers at once. One watcher per process polls (`watch.rs`:
    /// `PRAGMA data_version`, no table read, no lock) and wakes the consumers only when the
    /// file changed, so the cost does not grow with the number of consumers. A hop between
    /// processes waits half the interval on average: about 20 ms of the order flow's 50 ms
    /// p50 over four hops. The cost and the latency as measured: docs/architecture.md,
    /// "Events".
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);
    /// Idle, a process polls five times less often, and the first hop after a quiet spell
    /// waits 25 ms on average (the commit wakes every process's watcher, so the hops after
    /// it are fast again).
    pub const DEFAULT_IDLE_POLL_INTERVAL: Duration = Duration::from_millis(50);

    /// `path` with the default timings.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            idle_poll_interval: Self::DEFAULT_IDLE_POLL_INTERVAL,
        }
    }
}

/// The event log in one SQLite file. Clones share its connections.
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    /// One connection for every write of this process, as for the services' own files
    /// (`meshmart::db`): its writes queue here, in order, rather than in SQLite's busy
    /// handler; the busy timeout is left for the other processes' locks.
    write: SqlitePool,
    /// `query_only` connections for the polls and the dead-letter listings.
    read: SqlitePool,
    /// The wake-ups of this process's consumers, and the watcher that sends them.
    shared: Arc<watch::Shared>,
}

/// Whether filter `f.filter` selects subject `e.subject`: equal, or the filter ends in `>`
/// and the subject starts with everything before it (`orders.>` takes `orders.created`,
/// not `orders`; `>` takes everything). Filters and subjects are validated first, so a
/// filter's `>` is always a whole last token. A macro, to be spliced into `concat!`.
macro_rules! filter_matches {
    () => {
        "(f.filter = e.subject OR (substr(f.filter, -1) = '>' \
          AND substr(e.subject, 1, length(f.filter) - 1) = substr(f.filter, 1, length(f.filter) - 1)))"
    };
}

impl EmbeddedBus {
    /// Opens the log, creating the file, its folder and its tables if needed.
    pub async fn open(config: &EmbeddedConfig) -> Result<Self> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        // Held until the schema is in place (see OpenLock).
        let open_lock = OpenLock::take(&config.path, config.busy_timeout).await?;
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout)
            .foreign_keys(true);
        // The writer stays open for good, and waiting for it is waiting for the lock, so it
        // gets the busy timeout as its bound (as in `meshmart::db`).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.busy_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        schema::create(&write).await?;
        drop(open_lock);
        let reader = options.pragma("query_only", "ON");
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_lazy_with(reader.clone());
        tracing::info!(path = %config.path.display(), "event log ready");
        Ok(Self {
            write,
            read,
            shared: watch::Shared::new(reader, config.poll_interval, config.idle_poll_interval),
        })
    }

    /// Closes the connections, the watcher's too; clones stop working as well.
    pub async fn close(&self) {
        self.shared.close();
        self.write.close().await;
        self.read.close().await;
    }
}

fn encode_headers(headers: &Headers) -> Result<String> {
    serde_json::to_string(headers).map_err(|error| Error::Events(format!("headers: {error}")))
}

/// Headers as stored. Only this code writes them, so a row that does not parse was edited
/// by hand: its event still goes out, without headers, and the log says why.
fn decode_headers(stored: &str, message_id: &str) -> Headers {
    serde_json::from_str(stored).unwrap_or_else(|error| {
        tracing::error!(message_id, %error, "stored event headers unreadable; delivering without them");
        Headers::new()
    })
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

type DeadLetterRow = (
    i64,
    String,
    String,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    i64,
);

const DEAD_LETTER_COLUMNS: &str =
    "id, consumer, subject, message_id, headers, payload, error, attempts, time_ms";

fn dead_letter(
    (id, consumer, subject, message_id, headers, payload, error, attempts, time_ms): DeadLetterRow,
) -> DeadLetter {
    DeadLetter {
        id: u64::try_from(id).unwrap_or_default(),
        headers: decode_headers(&headers, &message_id),
        consumer,
        subject,
        message_id,
        payload: payload.into(),
        error,
        attempts: to_u32(attempts),
        time_ms,
    }
}

impl EventBus for EmbeddedBus {
    type Consumer = EmbeddedConsumer;

    async fn publish(&self, event: Outgoing) -> Result<Published> {
        validate::outgoing(&event)?;
        let headers = encode_headers(&event.headers)?;
        let now = now_millis();
        // IMMEDIATE: take the write lock before reading anything, so the transaction never
        // has to upgrade a read snapshot another process has made stale (SQLITE_BUSY_SNAPSHOT,
        // which no busy timeout cures).
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT INTO events (message_id, subject, headers, payload, time_ms)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING RETURNING seq",
        )
        .bind(&event.message_id)
        .bind(&event.subject)
        .bind(&headers)
        .bind(event.payload.as_ref())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            tx.rollback().await?;
            tracing::debug!(message_id = %event.message_id, "duplicate event not stored");
            return Ok(Published::Duplicate);
        };
        // A job for every group whose filters take the subject. Groups are created under
        // the same write lock, so each new group either sees this event in its backfill or
        // is seen here.
        sqlx::query(concat!(
            "INSERT INTO deliveries (consumer, event_seq, state, attempts, available_ms)
             SELECT DISTINCT f.consumer, e.seq, 'pending', 0, e.time_ms
             FROM events e JOIN consumer_subjects f ON ",
            filter_matches!(),
            " WHERE e.seq = ?"
        ))
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.shared.notify.notify_waiters();
        self.shared.kick();
        Ok(Published::Stored)
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<EmbeddedConsumer> {
        config.validate()?;
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let created = sqlx::query(
            "INSERT INTO consumer_groups (name, created_ms) VALUES (?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&config.name)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let mut stored: Vec<String> =
            sqlx::query_scalar("SELECT filter FROM consumer_subjects WHERE consumer = ?")
                .bind(&config.name)
                .fetch_all(&mut *tx)
                .await?;
        stored.sort();
        let mut wanted = config.subjects.clone();
        wanted.sort();
        wanted.dedup();
        if stored != wanted {
            if !created {
                // Like an update of a JetStream consumer's filter: events from now on.
                tracing::info!(consumer = %config.name, from = ?stored, to = ?wanted, "consumer group subjects changed; they apply to events published from now on");
            }
            sqlx::query("DELETE FROM consumer_subjects WHERE consumer = ?")
                .bind(&config.name)
                .execute(&mut *tx)
                .await?;
            for filter in &wanted {
                sqlx::query("INSERT INTO consumer_subjects (consumer, filter) VALUES (?, ?)")
                    .bind(&config.name)
                    .bind(filter)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if created {
            let backfilled = sqlx::query(concat!(
                "INSERT OR IGNORE INTO deliveries (consumer, event_seq, state, attempts, available_ms)
                 SELECT DISTINCT f.consumer, e.seq, 'pending', 0, e.time_ms
                 FROM consumer_subjects f JOIN events e ON ",
                filter_matches!(),
                " WHERE f.consumer = ?"
            ))
            .bind(&config.name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tracing::info!(consumer = %config.name, backfilled, "consumer group created");
        }
        tx.commit().await?;
        self.shared.watch();
        Ok(EmbeddedConsumer::new(self.clone(), config))
    }

    async fn dead_letter(&self, consumer: &str, delivery: Delivery, error: &str) -> Result<()> {
        let Some(reply) = delivery.reply::<EmbeddedReply>() else {
            return Err(Error::Events(
                "dead_letter: the delivery did not come from the embedded log".to_owned(),
            ));
        };
        if reply.consumer() != consumer {
            return Err(Error::Events(format!(
                "dead_letter: the delivery belongs to group {}, not {consumer}",
                reply.consumer()
            )));
        }
        reply.dead_letter(error).await
    }

    async fn dead_letters(&self, consumer: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<DeadLetterRow> = match consumer {
            Some(consumer) => sqlx::query_as(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE consumer = ? ORDER BY id LIMIT ?"
            ))
            .bind(consumer)
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
            None => sqlx::query_as(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY id LIMIT ?"
            ))
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
        };
        Ok(rows.into_iter().map(dead_letter).collect())
    }

    async fn find_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let row: Option<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(dead_letter))
    }

    async fn replay(&self, id: u64) -> Result<bool> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let delivery: Option<i64> =
            sqlx::query_scalar("DELETE FROM dead_letters WHERE id = ? RETURNING delivery_id")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(delivery) = delivery else {
            return Ok(false);
        };
        // The group's own row, and no other group's: only the group that gave up sees it
        // again, as a first attempt, on its original subject (the event row is unchanged).
        sqlx::query(
            "UPDATE deliveries SET state = 'pending', attempts = 0, available_ms = ? WHERE id = ?",
        )
        .bind(now_millis())
        .bind(delivery)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(dead_letter = id, "dead letter replayed");
        self.shared.notify.notify_waiters();
        Ok(true)
    }
}
