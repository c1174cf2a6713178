//! Each service's own database: SQLite in a local file by default, PostgreSQL when
//! `DATABASE_URL` says so. One set of portable SQL serves both, through sqlx's `Any` driver:
//! `scripts/bench-store.sh` measured no difference from the typed pools large enough to pay
//! for two sets of query code (docs/architecture.md, "The store layer").
//!
//! On SQLite a service writes through one connection of its own and reads through the others,
//! so writers queue in the pool, in order, instead of sleeping in SQLite's busy handler while
//! holding connections that readers need (the same section has the figures).

pub mod inline;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use sqlx::{
    Any, AnyConnection, AnyPool, Connection,
    any::{AnyArguments, AnyPoolOptions, install_default_drivers},
    migrate::Migrator,
    query::Query,
};

use crate::{Error, Result, config::DatabaseConfig};

/// Where a service's reads go and where its writes go. On PostgreSQL both are the same pool;
/// on SQLite writes have one connection to themselves, and keyed reads on the read path may
/// run on the calling thread ([`Pools::inline`]).
#[derive(Debug, Clone)]
pub struct Pools {
    read: AnyPool,
    write: AnyPool,
    inline: Option<Arc<inline::InlineReads>>,
}

impl Pools {
    /// For statements that only read. On SQLite these connections refuse to write
    /// (`PRAGMA query_only`), so a write sent here by mistake fails in every test.
    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    /// For every statement that writes, and the transactions that contain them.
    pub fn write(&self) -> &AnyPool {
        &self.write
    }

    /// On a SQLite file, reads by key that run on the calling thread, without sqlx's
    /// hand-off to a connection thread (`inline`'s notes say when that is right); `None` on
    /// PostgreSQL, where the pool has no such cost.
    pub fn inline(&self) -> Option<&inline::InlineReads> {
        self.inline.as_deref()
    }
}

/// Connects, creating a SQLite file and its folder when needed, and runs the service's
/// migrations and then those of the event tables every service has (the outbox and inbox,
/// `src/events/migrations`).
///
/// Migrations are additive (expand now, contract in a later release), so the previous
/// release runs against a database the next one migrated: a canary's v1 and v2 share one.
/// That is why neither set refuses a database with migrations it does not know.
///
/// Waits up to `connect_timeout` in all for the database to answer: in a cluster it may
/// start after the service, and waiting here beats a crash loop (the startup probe keeps
/// traffic away meanwhile). Errors that waiting cannot cure (a wrong password, a
/// certificate that does not verify) end the wait at once.
pub async fn connect(config: &DatabaseConfig, migrator: Migrator) -> Result<Pools> {
    let (pools, _setting_up) = set_up(config, migrator).await?;
    Ok(pools)
}

/// [`connect`], returning with the SQLite file's [`OpenLock`] still held (`None` on
/// PostgreSQL), so that whatever else a first start writes (the demo data) goes in before
/// another process's start looks.
///
/// Why the lock: sqlx's SQLite migrator takes no lock (its PostgreSQL one takes an advisory
/// lock), so two processes starting at once on a new file would both apply the first
/// migration and one would fail ("table already exists").
async fn set_up(
    config: &DatabaseConfig,
    mut migrator: Migrator,
) -> Result<(Pools, Option<OpenLock>)> {
    install_default_drivers();
    let url = url(config)?;
    let sqlite = config.backend() == "sqlite";
    let setting_up = match sqlite_file(&url) {
        Some(file) => Some(OpenLock::take(&file, config.connect_timeout).await?),
        None => None,
    };
    let write = if sqlite {
        // Waiting for the writer connection is waiting for the write lock, so it gets the
        // same bound as the busy timeout it replaces. The connection stays open for good:
        // reopening it would put SQLite's start-up on some write's clock.
        options(config, Role::Writer)
            .max_connections(1)
            .acquire_timeout(config.busy_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options(config, Role::Both).max_connections(config.max_connections)
    }
    .connect_lazy(&url)?;
    wait_until_reachable(&url, &write, config.connect_timeout).await?;
    migrator.set_ignore_missing(true);
    migrator.run(&write).await?;
    let mut events = sqlx::migrate!("src/events/migrations");
    events.set_ignore_missing(true);
    events.run(&write).await?;
    let read = if sqlite {
        options(config, Role::Reader)
            .max_connections(config.max_connections)
            .connect_lazy(&url)?
    } else {
        write.clone()
    };
    let inline = sqlite_file(&url)
        .map(|path| Arc::new(inline::InlineReads::new(&path, config.busy_timeout)));
    tracing::info!(backend = config.backend(), "database ready");
    let pools = Pools {
        read,
        write,
        inline,
    };
    Ok((pools, setting_up))
}

/// The file of a SQLite URL; `None` for PostgreSQL and for an in-memory database, which
/// other connections cannot open.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    (!in_memory).then(|| PathBuf::from(path))
}

/// A service's store: the pools of its own database, connected and migrated from the
/// service's `migrations/` folder (the event tables too), for the service to add its
/// queries to in an `impl` of its own. Every service of the order flow has one.
#[macro_export]
macro_rules! service_store {
    ($store:ident) => {
        #[derive(Debug, Clone)]
        pub struct $store {
            db: $crate::db::Pools,
        }

        impl $store {
            /// Connects and migrates (the event tables too).
            pub async fn connect(
                config: &$crate::config::DatabaseConfig,
            ) -> Result<Self, $crate::Error> {
                let db = $crate::db::connect(config, sqlx::migrate!("./migrations")).await?;
                Ok(Self { db })
            }

            /// The pools, for the consumer's `apply_once` and the outbox.
            pub fn pools(&self) -> &$crate::db::Pools {
                &self.db
            }
        }
    };
}

/// A statement with its values bound, owning everything it needs.
pub type Statement = Query<'static, Any, AnyArguments<'static>>;

/// Connects and migrates as [`connect`] does; then, when the configuration asks for demo
/// data (`SEED_DEMO_DATA`) and `table` is still empty, runs the statements `demo_rows`
/// makes, in one transaction. `table` is a name from the service's own migrations.
pub async fn connect_seeded(
    config: &DatabaseConfig,
    migrator: Migrator,
    table: &str,
    demo_rows: impl FnOnce() -> Vec<Statement>,
) -> Result<Pools> {
    let (pools, _setting_up) = set_up(config, migrator).await?;
    if !config.seed_demo_data {
        return Ok(pools);
    }
    let mut tx = pools.write().begin().await?;
    // Replicas starting at once on one PostgreSQL database take turns here; the one that
    // comes second finds the table filled. (On SQLite the open lock already serialises
    // first starts.) A transaction-level lock: it goes with the commit.
    if config.backend() != "sqlite" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEED_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
    }
    if is_empty(&mut *tx, table).await? {
        let mut rows = 0_u64;
        for statement in demo_rows() {
            rows += statement.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        tracing::info!(table, rows, "added the demo data");
    }
    Ok(pools)
}

/// The PostgreSQL advisory lock that seeding takes: "meshseed" in ASCII. sqlx's migrator
/// uses a key derived from the database's name, so the two never meet.
const SEED_LOCK_KEY: i64 = 0x6d65_7368_7365_6564;

/// The URL to connect to: a SQLite URL gets its folder created and `mode=rwc`, so the file
/// is created on first start.
fn url(config: &DatabaseConfig) -> Result<String> {
    let Some(rest) = config
        .url
        .strip_prefix("sqlite://")
        .or_else(|| config.url.strip_prefix("sqlite:"))
    else {
        return Ok(config.url.clone());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    Ok(if rest.contains('?') {
        config.url.clone()
    } else {
        format!("{}?mode=rwc", config.url)
    })
}

/// The pause between two attempts to reach the database.
const CONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Waits until `pool` hands out a connection, for at most `timeout` in all.
///
/// Each attempt first opens a plain connection, which reports why it failed (the pool
/// retries refused connections silently until its acquire timeout), then takes one from the
/// pool, which opens the pool's first connection. The overall timeout cancels an attempt
/// still waiting when the time is up (a server that accepts the connection and never
/// answers, or the pool's own acquire timeout), so no attempt outlasts what is left.
async fn wait_until_reachable(url: &str, pool: &AnyPool, timeout: Duration) -> Result<()> {
    let mut attempts = 0_u32;
    let mut last: Option<sqlx::Error> = None;
    let attempt = || async {
        let probe = AnyConnection::connect(url).await?;
        // Only a courtesy to the server: the probe has done its job either way.
        if let Err(error) = probe.close().await {
            tracing::debug!(%error, "closing the probe connection failed");
        }
        pool.acquire().await.map(drop)
    };
    let waited = tokio::time::timeout(timeout, async {
        loop {
            attempts += 1;
            match attempt().await {
                Ok(()) => return Ok(()),
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, attempt = attempts, "database not reachable yet; waiting");
                    last = Some(error);
                    tokio::time::sleep(CONNECT_PAUSE).await;
                }
                Err(error) => return Err(Error::Database(error)),
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        Err(Error::DatabaseUnreachable {
            waited: timeout,
            attempts,
            last: last.map_or_else(|| "no answer".to_owned(), |error| error.to_string()),
        })
    })
}

/// What a pool's connections are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// SQLite's one writer connection.
    Writer,
    /// SQLite's readers.
    Reader,
    /// PostgreSQL: one pool for both.
    Both,
}

fn options(config: &DatabaseConfig, role: Role) -> AnyPoolOptions {
    let busy_timeout_ms = config.busy_timeout.as_millis();
    AnyPoolOptions::new()
        // No ping on every checkout: it doubled the round trips to SQLite's connection
        // thread (docs/benchmarks.md). A broken connection shows as an I/O error on use,
        // which is answered as UNAVAILABLE, and the pool replaces it.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if role == Role::Both {
                    return Ok(());
                }
                // WAL lets readers run beside the one writer; the busy timeout bounds how
                // long a writer waits for a lock held by another process (or a checkpoint)
                // before its call answers UNAVAILABLE.
                let mut pragmas = vec![
                    "PRAGMA journal_mode = WAL".to_owned(),
                    format!("PRAGMA busy_timeout = {busy_timeout_ms}"),
                    "PRAGMA foreign_keys = ON".to_owned(),
                    "PRAGMA synchronous = NORMAL".to_owned(),
                ];
                if role == Role::Reader {
                    pragmas.push("PRAGMA query_only = ON".to_owned());
                }
                for pragma in &pragmas {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// Whether a database error is worth retrying: the database is out of reach or busy,
/// rather than the request or the code being wrong. Services answer UNAVAILABLE for these
/// (which the mesh may retry) and INTERNAL for the rest.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        // rustls reports a failed handshake (a certificate that does not verify) as
        // InvalidData; waiting does not fix that. Every other I/O error is the network.
        sqlx::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        sqlx::Error::Database(db) => {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|code| code.parse().ok())
                    .is_some_and(is_transient_sqlite_code)
            } else if let Some(postgres) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            {
                is_transient_sqlstate(postgres.code())
            } else {
                false
            }
        }
        _ => false,
    }
}

/// SQLite: busy (5) or locked (6), by the primary result code. sqlx turns on extended
/// result codes and reports those, so a busy database also arrives as 261 (BUSY_RECOVERY),
/// 517 (BUSY_SNAPSHOT) or 773 (BUSY_TIMEOUT), a locked one as 262 (LOCKED_SHAREDCACHE) or
/// 518 (LOCKED_VTAB); the low byte is the primary code.
fn is_transient_sqlite_code(code: i32) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
}

/// PostgreSQL: serialization failure, deadlock, too many connections, admin shutdown and
/// friends, and the whole connection-exception class (08).
fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
    ) || code.starts_with("08")
}

/// The status a service answers for a database error: UNAVAILABLE for a transient one (the
/// mesh may retry it), INTERNAL otherwise. The details stay in the log, not in the reply.
pub fn status(error: &sqlx::Error) -> tonic::Status {
    transient_or_internal(is_transient(error), error)
}

/// UNAVAILABLE or INTERNAL for a database error of either driver, logged once here.
fn transient_or_internal(transient: bool, error: &dyn std::fmt::Display) -> tonic::Status {
    if transient {
        tracing::warn!(%error, "database unavailable");
        tonic::Status::unavailable("database unavailable")
    } else {
        tracing::error!(%error, "database error");
        tonic::Status::internal("internal error")
    }
}

/// Whether `table` has no rows yet: a new database, which a service may seed with the demo
/// data. `table` is a name from the service's own migrations, never from a request.
pub async fn is_empty<'c>(
    executor: impl sqlx::Executor<'c, Database = Any>,
    table: &str,
) -> Result<bool, sqlx::Error> {
    let (rows,): (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS any_row"
    ))
    .fetch_one(executor)
    .await?;
    Ok(rows == 0)
}

/// Milliseconds since the Unix epoch, as stored in `*_time_ms` columns.
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Turns a stored `*_time_ms` value into a protobuf timestamp.
pub fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{AnyConnection, Connection, migrate::Migrator};

    use super::*;

    fn migrator() -> Migrator {
        sqlx::migrate!("src/db/test-migrations")
    }

    #[test]
    fn inline_reads_are_for_sqlite_files_only() {
        for (url, file) in [
            ("sqlite://data/catalog.db?mode=rwc", Some("data/catalog.db")),
            ("sqlite:/tmp/x.db", Some("/tmp/x.db")),
            ("sqlite::memory:", None),
            ("sqlite://shared?mode=memory&cache=shared", None),
            ("postgres://u@db/catalog", None),
        ] {
            assert_eq!(sqlite_file(url), file.map(PathBuf::from), "{url}");
        }
    }

    #[test]
    fn sqlite_busy_and_locked_count_by_their_primary_code() {
        // BUSY, BUSY_RECOVERY, BUSY_SNAPSHOT, BUSY_TIMEOUT; LOCKED, LOCKED_SHAREDCACHE, LOCKED_VTAB.
        for code in [5, 261, 517, 773, 6, 262, 518] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        // ERROR, READONLY, IOERR, CANTOPEN, CONSTRAINT, CONSTRAINT_UNIQUE, CONSTRAINT_PRIMARYKEY,
        // CONSTRAINT_FOREIGNKEY, CORRUPT, FULL.
        for code in [1, 8, 10, 14, 19, 2067, 1555, 787, 11, 13] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
    }

    #[test]
    fn postgres_sqlstates() {
        for code in [
            "40001", "40P01", "53300", "57P01", "57P03", "08006", "08001",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        // 22021's low byte as a number is 5: SQLSTATEs must never go through SQLite's rule.
        for code in ["23505", "22021", "42P01", "28P01", "3D000", "42501"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    fn sqlite_url(dir: &tempfile::TempDir, query: &str) -> String {
        format!(
            "sqlite://{}?mode=rwc{query}",
            dir.path().join("t.db").display()
        )
    }

    async fn run(conn: &mut AnyConnection, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(conn).await.map(drop)
    }

    /// Asserts what the services see for `error`: the SQLite code sqlx reports, and UNAVAILABLE.
    fn assert_unavailable(error: &sqlx::Error, sqlite_code: &str) {
        let sqlx::Error::Database(db) = error else {
            panic!("expected a database error, got {error:?}");
        };
        // sqlx turns SQLite's extended result codes on and reports them, not the primary code.
        assert_eq!(db.code().as_deref(), Some(sqlite_code), "{error}");
        assert!(is_transient(error), "{error}");
        assert_eq!(status(error).code(), tonic::Code::Unavailable);
    }

    /// Real errors from SQLite, through the `Any` driver as the stores get them.
    #[tokio::test]
    async fn sqlite_busy_errors_answer_unavailable() {
        install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir, "");
        let mut a = AnyConnection::connect(&url).await.unwrap();
        let mut b = AnyConnection::connect(&url).await.unwrap();
        run(&mut a, "PRAGMA journal_mode = WAL").await.unwrap();
        run(&mut a, "CREATE TABLE t (x BIGINT)").await.unwrap();

        // SQLITE_BUSY (5): the write lock is taken and b does not wait for it.
        run(&mut b, "PRAGMA busy_timeout = 0").await.unwrap();
        run(&mut a, "BEGIN IMMEDIATE").await.unwrap();
        let busy = run(&mut b, "BEGIN IMMEDIATE").await.unwrap_err();
        assert_unavailable(&busy, "5");
        run(&mut a, "COMMIT").await.unwrap();

        // SQLITE_BUSY_SNAPSHOT (517): a read transaction that another connection's commit
        // made stale cannot become a write transaction; no busy timeout helps.
        run(&mut a, "BEGIN").await.unwrap();
        run(&mut a, "SELECT COUNT(*) FROM t").await.unwrap();
        run(&mut b, "INSERT INTO t VALUES (1)").await.unwrap();
        let snapshot = run(&mut a, "INSERT INTO t VALUES (2)").await.unwrap_err();
        assert_unavailable(&snapshot, "517");
        run(&mut a, "ROLLBACK").await.unwrap();
    }

    /// SQLITE_LOCKED reaches the stores only as a deadlock: sqlx waits out
    /// SQLITE_LOCKED_SHAREDCACHE (262) with `sqlite3_unlock_notify` instead of reporting it,
    /// and reports SQLITE_LOCKED (6) when that wait would never end. Shared-cache mode, where
    /// table locks live, is what `sqlite::memory:` uses; the services' files do not.
    #[tokio::test]
    async fn sqlite_locked_errors_answer_unavailable() {
        install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir, "&cache=shared");
        let mut a = AnyConnection::connect(&url).await.unwrap();
        let mut b = AnyConnection::connect(&url).await.unwrap();
        run(&mut a, "CREATE TABLE t1 (x BIGINT)").await.unwrap();
        run(&mut a, "CREATE TABLE t2 (x BIGINT)").await.unwrap();
        // b reads t2 and keeps its table lock; a writes t1 and keeps its lock. Then a wants
        // t2 and b wants t1: whichever of the two asks second closes the cycle and is told.
        run(&mut b, "BEGIN").await.unwrap();
        run(&mut b, "SELECT COUNT(*) FROM t2").await.unwrap();
        run(&mut a, "BEGIN").await.unwrap();
        run(&mut a, "INSERT INTO t1 VALUES (1)").await.unwrap();
        let mut a = tokio::spawn(async move {
            let result = run(&mut a, "INSERT INTO t2 VALUES (1)").await;
            (a, result)
        });
        let mut b = tokio::spawn(async move {
            let result = run(&mut b, "SELECT COUNT(*) FROM t1").await;
            (b, result)
        });
        let first = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::select! {
                done = &mut a => (done.unwrap(), b),
                done = &mut b => (done.unwrap(), a),
            }
        })
        .await
        .expect("sqlx should report the deadlock");
        let ((mut told, locked), other) = first;
        assert_unavailable(&locked.unwrap_err(), "6");
        // Letting go lets the other one finish.
        run(&mut told, "ROLLBACK").await.unwrap();
        let (mut other, result) = tokio::time::timeout(Duration::from_secs(30), other)
            .await
            .expect("the other connection goes on once the first lets go")
            .unwrap();
        result.unwrap();
        run(&mut other, "ROLLBACK").await.unwrap();
    }

    fn config(url: String, connect_timeout: Duration) -> DatabaseConfig {
        DatabaseConfig {
            connect_timeout,
            ..DatabaseConfig::with_url(url)
        }
    }

    #[tokio::test]
    async fn sqlite_reads_cannot_write_and_writes_queue_for_the_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(sqlite_url(&dir, ""), Duration::from_secs(30));
        let pools = connect(&config, migrator()).await.unwrap();
        let refused = sqlx::query("INSERT INTO probe (id, label) VALUES (0, 'read')")
            .execute(pools.read())
            .await
            .unwrap_err();
        let sqlx::Error::Database(db) = &refused else {
            panic!("{refused:?}");
        };
        // SQLITE_READONLY: the read pool's connections are query_only.
        assert_eq!(db.code().as_deref(), Some("8"), "{refused}");

        // Many writers at once: each waits for the writer connection, none for the lock.
        let writers = (0..16_i64).map(|task| {
            let pool = pools.write().clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO probe (id, label) VALUES ($1, 'write')")
                        .bind(task * 100 + i)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap().unwrap();
        }
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM probe")
            .fetch_one(pools.read())
            .await
            .unwrap();
        assert_eq!(rows, 80);
    }

    /// Start-up gives up by itself once DATABASE_CONNECT_TIMEOUT_SECS is over, with an error
    /// that says so. The outer bound only keeps a broken build from hanging the suite; it is
    /// many times the configured wait, and no timing is asserted.
    async fn assert_gives_up(url: String) -> (u32, String) {
        let config = config(url, Duration::from_secs(2));
        let result = tokio::time::timeout(Duration::from_secs(60), connect(&config, migrator()))
            .await
            .expect("start-up should give up by itself");
        match result {
            Err(Error::DatabaseUnreachable {
                waited,
                attempts,
                last,
            }) => {
                assert_eq!(waited, Duration::from_secs(2));
                (attempts, last)
            }
            other => panic!("expected DatabaseUnreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn start_up_gives_up_when_nothing_listens() {
        // A loopback port that was just free: connections to it are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (attempts, last) =
            assert_gives_up(format!("postgres://meshmart@127.0.0.1:{port}/x")).await;
        assert!(attempts >= 1);
        assert_ne!(last, "no answer", "a refused connection says why");
    }

    #[tokio::test]
    async fn start_up_gives_up_when_the_server_never_answers() {
        // Accepts connections and holds them without a word, as a stuck server or a black
        // hole in the network does: the attempt itself has to be cut short.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let (attempts, last) =
            assert_gives_up(format!("postgres://meshmart@127.0.0.1:{port}/x")).await;
        assert_eq!((attempts, last.as_str()), (1, "no answer"));
        silent.abort();
    }

    /// The throwaway server of scripts/with-postgres.sh, its CA and an unrelated CA; `None`
    /// (with a warning) when the tests do not run under it, unless MESHMART_REQUIRE_POSTGRES.
    fn postgres_tls() -> Option<(String, String, String)> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let found = (|| {
            Some((
                var("MESHMART_TEST_POSTGRES_URL")?,
                var("MESHMART_TEST_POSTGRES_CA")?,
                var("MESHMART_TEST_POSTGRES_WRONG_CA")?,
            ))
        })();
        if found.is_none() {
            assert!(
                var("MESHMART_REQUIRE_POSTGRES").is_none(),
                "MESHMART_REQUIRE_POSTGRES is set but the test server's URL or CAs are not: run the tests through scripts/with-postgres.sh"
            );
            eprintln!("warning: MESHMART_TEST_POSTGRES_URL/_CA are not set; skipping the TLS test");
        }
        found
    }

    #[tokio::test]
    async fn postgres_over_tls_verifies_the_server() {
        let Some((admin, ca, wrong_ca)) = postgres_tls() else {
            return;
        };
        // A database of its own, made over a plain connection.
        let name = format!("t_db_tls_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");

        // The certificate names 127.0.0.1 and localhost; verify-full checks both the chain
        // and the name.
        for url in [url.clone(), url.replacen("127.0.0.1", "localhost", 1)] {
            let tls = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
            let pools = connect(&config(tls, Duration::from_secs(30)), migrator())
                .await
                .unwrap();
            let (ssl,): (bool,) =
                sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .fetch_one(pools.read())
                    .await
                    .unwrap();
            assert!(ssl, "{url}: the connection is not encrypted");
            pools.write().close().await;
        }

        // A CA that did not sign the server's certificate: refused, and at once rather than
        // after the connect timeout, since waiting would not help.
        let wrong = format!("{url}?sslmode=verify-full&sslrootcert={wrong_ca}");
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            connect(&config(wrong, Duration::from_secs(30)), migrator()),
        )
        .await
        .expect("a certificate that does not verify should fail at once");
        match result {
            Err(Error::Database(error)) => {
                assert!(!is_transient(&error), "{error}");
                assert!(
                    error.to_string().to_lowercase().contains("certificate"),
                    "{error}"
                );
            }
            other => panic!("expected a TLS error, got {other:?}"),
        }

        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// An advisory lock (flock) on `<file>.open-lock`, held while a process opens a SQLite file
/// that other processes may be opening too, and released when dropped.
///
/// Why: SQLite answers the switch of a new file to WAL mode with SQLITE_BUSY when another
/// connection is making the same switch, without waiting in its busy handler, so processes
/// that open a new file at once could fail ("database is locked"). Taking turns at opening
/// (a few milliseconds each) removes the race; after the open, SQLite's own locks take over.
#[derive(Debug)]
pub(crate) struct OpenLock {
    /// Locked while held; closing it (on drop) releases the lock.
    _file: std::fs::File,
}

/// How often a waiting opener tries the lock again.
const OPEN_LOCK_PAUSE: Duration = Duration::from_millis(5);

impl OpenLock {
    /// Takes the lock for `file`, waiting at most `timeout` for another process's open.
    pub(crate) async fn take(file: &Path, timeout: Duration) -> Result<Self> {
        let mut name = file.as_os_str().to_owned();
        name.push(".open-lock");
        let path = std::path::PathBuf::from(name);
        let io_error = |source| Error::DataDir {
            path: path.clone(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(Self { _file: lock }),
                Err(std::fs::TryLockError::WouldBlock)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(OPEN_LOCK_PAUSE).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io_error(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "another process held the open lock for the whole busy timeout",
                    )));
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(io_error(source)),
            }
        }
    }
}
