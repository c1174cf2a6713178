//! First starts at once: replicas started together on a new database (`meshctl up` with
//! replicas, a rollout, a test suite's first run) all come up, and the demo data goes in
//! once. Separate pools in one process open the file separately, so the locks they take
//! conflict as another process's would.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshmart::{
    config::DatabaseConfig,
    db::connect_seeded,
    testing::{backends, database_url},
};

/// How many replicas start at once.
const REPLICAS: usize = 4;

#[tokio::test]
async fn replicas_starting_at_once_on_a_new_database_all_come_up_and_seed_once() {
    for backend in backends() {
        // A race lost once in a while would pass by luck: several fresh databases.
        for attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let url = database_url(backend, dir.path(), &format!("first_start_{attempt}")).await;
            let config = DatabaseConfig::with_url(url);
            let start = || {
                connect_seeded(
                    &config,
                    sqlx::migrate!("src/db/test-migrations"),
                    "probe",
                    || {
                        (1..=3)
                            .map(|id: i64| {
                                sqlx::query("INSERT INTO probe (id, label) VALUES ($1, 'demo')")
                                    .bind(id)
                            })
                            .collect()
                    },
                )
            };
            let started = futures_util::future::join_all((0..REPLICAS).map(|_| start())).await;
            let mut replicas = Vec::new();
            for replica in started {
                replicas.push(
                    replica.unwrap_or_else(|e| panic!("{backend:?}, attempt {attempt}: {e}")),
                );
            }
            let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM probe")
                .fetch_one(replicas[0].read())
                .await
                .unwrap();
            assert_eq!(rows, 3, "{backend:?}, attempt {attempt}");
        }
    }
}
