//! SQLite reads on the calling thread, for the read path's lookups by key.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement to it
//! over a channel, so a query wakes that thread and is woken back: about four context
//! switches and, in a GetProduct, more CPU than the two-hop echo's whole call
//! (docs/benchmarks.md, "Instructions per call"). The query itself, a primary-key lookup or
//! a short page of an index, in pages already cached, is a few thousand instructions. [`InlineReads`] runs such reads on
//! the task's own thread instead, through rusqlite (over the same bundled SQLite as sqlx),
//! on read-only connections of its own.
//!
//! Running a query on a runtime thread is safe here because it cannot wait on other work: in
//! WAL mode a reader takes no lock that a writer holds, and reads its snapshot from the file
//! and the WAL. The one wait left is SQLite's busy handler while another process rebuilds
//! the WAL index after a crash, bounded by the same busy timeout as every connection. A
//! query that scans more than a bounded page of an index, or one that takes a lock, belongs
//! on the pool, not here.
//!
//! Each read starts its own read transaction, so it sees every write committed before it
//! began, by this process or another sharing the file: what "a stock change acknowledged
//! to its caller is visible to every read that starts after it" needs.
//!
//! PostgreSQL has no such hand-off (sqlx drives its socket from the task), so stores read
//! through the pool there: [`super::Pools::inline`] is `None`.

// The idle connections are behind a std Mutex, held for one push or pop and never across an
// await (nothing here is async): the workspace's rule against it is for async code.
#![allow(clippy::disallowed_types)]

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

/// The crate the inline reads are written with, for the services' error conversions.
pub use rusqlite;
use rusqlite::{Connection, OpenFlags};

/// Idle connections kept for the next read. A read holds its connection only while it runs,
/// without yielding, so no more are in use at once than the runtime has threads.
const MAX_IDLE: usize = 16;

/// Prepared statements kept per connection: one per query shape (an `IN` list of n keys is a
/// shape of its own).
const STATEMENT_CACHE: usize = 64;

/// Read-only connections to one SQLite file, for reads made on the calling thread.
#[derive(Debug)]
pub struct InlineReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReads {
    /// Reads of the database file at `path`, which the service's sqlx pool has created and
    /// migrated (and keeps open, so its WAL files exist for a read-only connection).
    pub(crate) fn new(path: &Path, busy_timeout: Duration) -> Self {
        Self {
            path: path.to_owned(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a read-only connection, on this thread. `read` should be one keyed
    /// lookup or one bounded page of an index (see the module's notes); its statements are prepared once per connection with
    /// [`Connection::prepare_cached`].
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let connection = match self.idle().pop() {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        result
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while the lock is held (a push or a pop), so a poisoned lock still
        // guards a whole list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(self.busy_timeout)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(connection)
    }
}

/// Whether a failed inline read may succeed later: the database was busy or locked.
pub fn is_transient(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The status a service answers for a failed inline read, as [`super::status`] does for the
/// pool's errors: UNAVAILABLE when it may pass, INTERNAL otherwise; details in the log only.
pub fn status(error: &rusqlite::Error) -> tonic::Status {
    super::transient_or_internal(is_transient(error), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> PathBuf {
        let path = dir.join("inline.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);
                 INSERT INTO t VALUES ('a', 1);",
            )
            .unwrap();
        path
    }

    fn value(reads: &InlineReads) -> i64 {
        reads
            .read(|c| {
                c.prepare_cached("SELECT v FROM t WHERE k = $1")?
                    .query_row(["a"], |row| row.get(0))
            })
            .unwrap()
    }

    #[test]
    fn a_read_sees_every_write_committed_before_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path());
        let writer = Connection::open(&path).unwrap();
        let reads = InlineReads::new(&path, Duration::from_millis(100));
        assert_eq!(value(&reads), 1);
        // The same (cached) connection and statement, after another connection's commit.
        writer
            .execute("UPDATE t SET v = 2 WHERE k = 'a'", [])
            .unwrap();
        assert_eq!(value(&reads), 2);
        assert_eq!(
            reads.idle().len(),
            1,
            "the connection is kept for the next read"
        );
    }

    #[test]
    fn inline_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let reads = InlineReads::new(&database(dir.path()), Duration::from_millis(100));
        let error = reads
            .read(|c| c.execute("UPDATE t SET v = 3", []))
            .unwrap_err();
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly)
        );
        assert_eq!(status(&error).code(), tonic::Code::Internal);
    }

    #[test]
    fn a_locked_database_is_unavailable_not_internal() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(is_transient(&busy));
        assert_eq!(status(&busy).code(), tonic::Code::Unavailable);
    }
}
