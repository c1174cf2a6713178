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
    let sqlite = config.backend() == "sqlite";
    let pool = AnyPoolOptions::new()
        .max_connections(config.max_connections)
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
        .connect(&url)
        .await?;
    migrator.run(&pool).await?;
    tracing::info!(backend = config.backend(), "database ready");
    Ok(pool)
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

/// Whether a database error is a unique-key violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
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
