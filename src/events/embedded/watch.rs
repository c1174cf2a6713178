//! The one poll of a process: a watcher that notices a commit to the file by any process
//! and wakes this process's consumers, so that a consumer queries only when something
//! changed (or when one of its deliveries falls due), not on every tick.
//!
//! It reads `PRAGMA data_version` on a connection of its own: SQLite changes the number
//! whenever another connection, in any process, commits to the file, and answers from the
//! WAL index in shared memory without reading a table. One such read per tick per process,
//! however many consumers the process runs.
//!
//! It ticks every `poll_interval` while the file is busy, and every `idle_poll_interval`
//! once nothing has changed for [`BUSY_FOR`]. Every process watches the same file, so the
//! first commit after a quiet spell sets all of them ticking fast within one slow tick,
//! and a process that publishes kicks its own watcher at once ([`Shared::kick`]): only the
//! first hop of a flow pays the slower poll.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use tokio::{sync::Notify, time::Instant};

/// The pause after the watcher's connection fails, before it reconnects.
const RETRY: Duration = Duration::from_secs(1);

/// How long after the last change the watcher keeps ticking fast.
const BUSY_FOR: Duration = Duration::from_secs(2);

/// What the clones of one bus share.
#[derive(Debug)]
pub(super) struct Shared {
    /// Woken by the watcher, and at once by this process's own publishes, naks and
    /// replays.
    pub(super) notify: Notify,
    /// Ends the watcher's pause, so it ticks now and fast from now on.
    kick: Arc<Notify>,
    started: AtomicBool,
    /// Set by `EmbeddedBus::close`: the watcher lets go of its connection too.
    closed: AtomicBool,
    /// A reader's options, for the watcher's connection.
    options: SqliteConnectOptions,
    busy_interval: Duration,
    idle_interval: Duration,
}

impl Shared {
    pub(super) fn new(
        options: SqliteConnectOptions,
        busy_interval: Duration,
        idle_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            notify: Notify::new(),
            kick: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            options,
            busy_interval,
            idle_interval,
        })
    }

    /// Starts the watcher, once, when the first consumer joins: a process that only
    /// publishes needs none. It ends when the last clone of the bus is gone.
    pub(super) fn watch(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(watch(Arc::downgrade(self), Arc::clone(&self.kick)));
        }
    }

    /// Ends the watcher at its next tick, and wakes it for that.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.kick();
    }

    /// This process just committed: the answer, if any, comes soon, so the watcher stops
    /// idling now rather than at its next slow tick.
    pub(super) fn kick(&self) {
        self.kick.notify_one();
    }
}

async fn watch(shared: Weak<Shared>, kick: Arc<Notify>) {
    let mut connection: Option<SqliteConnection> = None;
    let mut seen: Option<i64> = None;
    let mut changed = Instant::now();
    while let Some(strong) = shared.upgrade() {
        if strong.closed.load(Ordering::Acquire) {
            break;
        }
        let pause = match data_version(&mut connection, &strong.options).await {
            Ok(version) => {
                if seen != Some(version) {
                    strong.notify.notify_waiters();
                    seen = Some(version);
                    changed = Instant::now();
                }
                if changed.elapsed() < BUSY_FOR {
                    strong.busy_interval
                } else {
                    strong.idle_interval
                }
            }
            Err(error) => {
                // Consumers still look by themselves now and then (`FALLBACK_POLL`), so a
                // watcher that cannot read slows them down without stopping them.
                tracing::warn!(%error, retry_in_ms = RETRY.as_millis(), "event log watcher cannot read the file; reconnecting");
                connection = None;
                RETRY
            }
        };
        // Not held while asleep, so dropping the bus ends the watcher at its next tick.
        drop(strong);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = kick.notified() => {}
        }
    }
}

async fn data_version(
    connection: &mut Option<SqliteConnection>,
    options: &SqliteConnectOptions,
) -> Result<i64, sqlx::Error> {
    let connection = match connection {
        Some(connection) => connection,
        None => connection.insert(SqliteConnection::connect_with(options).await?),
    };
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(connection)
        .await
}
