//! Each service's own database: SQLite in a local file by default, PostgreSQL when
//! `DATABASE_URL` says so. One set of portable SQL serves both, through sqlx's `Any` driver.

use std::{path::Path, time::Duration};

use sqlx::{
    AnyPool,
    any::{AnyPoolOptions, install_default_drivers},
    migrate::Migrator,
};

use crate::{Error, Result, config::DatabaseConfig};

/// Connects, creating a SQLite file and its folder when needed, and runs the migrations.
pub async fn connect(config: &DatabaseConfig, migrator: &Migrator) -> Result<AnyPool> {
    install_default_drivers();
    let url = match config
        .url
        .strip_prefix("sqlite://")
        .or_else(|| config.url.strip_prefix("sqlite:"))
    {
        Some(rest) => {
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
            // Create the file on first start.
            if rest.contains('?') {
                config.url.clone()
            } else {
                format!("{}?mode=rwc", config.url)
            }
        }
        None => config.url.clone(),
    };
    let pool = connect_when_reachable(&url, config).await?;
    migrator.run(&pool).await?;
    tracing::info!(backend = config.backend(), "database ready");
    Ok(pool)
}

/// How long a starting service waits for its database to accept connections. In a cluster
/// the database may start after the service; waiting here beats a crash loop, and the
/// startup probe keeps traffic away meanwhile.
const CONNECT_ATTEMPTS: u32 = 30;
const CONNECT_PAUSE: Duration = Duration::from_secs(1);

async fn connect_when_reachable(url: &str, config: &DatabaseConfig) -> Result<AnyPool> {
    let mut attempt = 1;
    loop {
        match pool(url, config).await {
            Ok(pool) => return Ok(pool),
            Err(error) if attempt < CONNECT_ATTEMPTS && is_transient(&error) => {
                tracing::warn!(%error, attempt, "database not reachable yet; waiting");
                tokio::time::sleep(CONNECT_PAUSE).await;
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn pool(url: &str, config: &DatabaseConfig) -> Result<AnyPool, sqlx::Error> {
    let sqlite = config.backend() == "sqlite";
    AnyPoolOptions::new()
        .max_connections(config.max_connections)
        // No ping on every checkout: it doubled the round trips to SQLite's connection
        // thread (docs/benchmarks.md). A broken connection shows as an I/O error on use,
        // which is answered as UNAVAILABLE, and the pool replaces it.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    // WAL lets readers run beside the one writer; the busy timeout makes
                    // writers queue for the lock instead of failing at once.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA synchronous = NORMAL",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// Whether a database error is worth retrying: the database is out of reach or busy,
/// rather than the request or the code being wrong. Services answer UNAVAILABLE for these
/// (which the mesh may retry) and INTERNAL for the rest.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6). PostgreSQL: serialization failure,
            // deadlock, too many connections, admin shutdown and friends.
            matches!(
                code,
                "5" | "6" | "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
            ) || code.starts_with("08")
        }
        _ => false,
    }
}

/// The status a service answers for a database error: UNAVAILABLE for a transient one (the
/// mesh may retry it), INTERNAL otherwise. The details stay in the log, not in the reply.
pub fn status(error: &sqlx::Error) -> tonic::Status {
    if is_transient(error) {
        tracing::warn!(%error, "database unavailable");
        tonic::Status::unavailable("database unavailable")
    } else {
        tracing::error!(%error, "database error");
        tonic::Status::internal("internal error")
    }
}

/// Whether `table` has no rows yet: a new database, which a service may seed with the demo
/// data. `table` is a name from the service's own migrations, never from a request.
pub async fn is_empty(pool: &AnyPool, table: &str) -> Result<bool, sqlx::Error> {
    let (rows,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
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
