//! The store-layer benchmark, in one run on one machine:
//!
//! 1. per query, sqlx's `Any` pool against the typed pool of the same backend (`SqlitePool`,
//!    `PgPool`), both configured as `meshmart::db` configures its pool: a point select by
//!    primary key of an 8-column product row, an `IN (...)` select of 10 rows, and a small
//!    write transaction (insert, update, commit), with 1 and 16 callers;
//! 2. on SQLite, 16 tasks doing reservation-like write transactions through the shared pool
//!    of 8 connections, against one dedicated writer connection (readers on the other pool).
//!
//! Prints a Markdown report on stdout; progress goes to stderr. PostgreSQL is measured when
//! `MESHMART_TEST_POSTGRES_URL` names a server whose databases may be created and dropped
//! (`scripts/bench-store.sh` runs this under `scripts/with-postgres.sh`). Timings belong in
//! this report, never in a test.
//!
//! Usage: `store-bench [--dir DIR] [--rounds N]`.

use std::{
    hint::black_box,
    io::Write,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use sqlx::{
    AnyPool, Connection, PgPool, SqlitePool, any::install_default_drivers, migrate::Migrator,
    pool::PoolOptions,
};
use tokio::time::Instant;

static CATALOG: Migrator = sqlx::migrate!("../../services/catalog/migrations");
static INVENTORY: Migrator = sqlx::migrate!("../../services/inventory/migrations");

const POOL_SIZE: u32 = 8;
const PRODUCTS: u64 = 1000;
const STOCKED: u64 = 100;
const COLUMNS: &str = "product_id, display_name, description, currency_code, price_units, price_nanos, create_time_ms, update_time_ms";
/// The busy timeout the services set today, and the one `DATABASE_BUSY_TIMEOUT_MS` is to
/// default to.
const BUSY_TODAY: Duration = Duration::from_secs(10);
const BUSY_PLANNED: Duration = Duration::from_secs(1);

type Row = (String, String, String, String, i64, i64, i64, i64);

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a benchmark task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// One pool, through one layer.
#[derive(Debug, Clone)]
enum Layer {
    Any(AnyPool),
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Expands `$body` once per pool type, so each arm is compiled against the concrete pool.
macro_rules! on_pool {
    ($layer:expr, $pool:ident => $body:expr) => {
        match $layer {
            Layer::Any($pool) => $body,
            Layer::Sqlite($pool) => $body,
            Layer::Postgres($pool) => $body,
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Point,
    In10,
    Write,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Point => "(a) point select, 8 columns",
            Self::In10 => "(b) IN (...) select, 10 rows",
            Self::Write => "(c) write tx: insert + update + commit",
        }
    }

    /// Queries per measured round, shared among the callers.
    fn per_round(self) -> usize {
        match self {
            Self::Point | Self::In10 => 3200,
            Self::Write => 640,
        }
    }
}

/// A small xorshift generator: the benchmark needs spread-out keys, not good randomness.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn product_id(n: u64) -> String {
    format!("p{n:04}")
}

/// The SQL of every query, built once so each is a cached prepared statement.
#[derive(Debug)]
struct Sql {
    point: String,
    in10: String,
    insert: String,
    update: &'static str,
}

impl Sql {
    fn new() -> Self {
        let placeholders = (1..=10)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            point: format!("SELECT {COLUMNS} FROM products WHERE product_id = $1"),
            in10: format!("SELECT {COLUMNS} FROM products WHERE product_id IN ({placeholders})"),
            insert: format!(
                "INSERT INTO products ({COLUMNS}) VALUES ($1, 'A product', 'Made for the benchmark', 'EUR', 12, 500000000, $2, $2)"
            ),
            update: "UPDATE products SET update_time_ms = $1 WHERE product_id = $2",
        }
    }
}

async fn run_op(
    layer: &Layer,
    sql: &Sql,
    op: Op,
    key: &str,
    rng: &mut Rng,
) -> Result<(), sqlx::Error> {
    match op {
        Op::Point => {
            let id = product_id(rng.below(PRODUCTS));
            let row: Row = on_pool!(layer, pool => sqlx::query_as(&sql.point).bind(&id).fetch_one(pool).await?);
            black_box(row);
        }
        Op::In10 => {
            // 37 is prime to 1000, so the ten ids are distinct.
            let start = rng.below(PRODUCTS);
            let ids: Vec<String> = (0..10)
                .map(|k| product_id((start + 37 * k) % PRODUCTS))
                .collect();
            let rows: Vec<Row> = on_pool!(layer, pool => {
                let mut query = sqlx::query_as(&sql.in10);
                for id in &ids {
                    query = query.bind(id);
                }
                query.fetch_all(pool).await?
            });
            if rows.len() != ids.len() {
                return Err(sqlx::Error::RowNotFound);
            }
            black_box(rows);
        }
        Op::Write => {
            let other = product_id(rng.below(PRODUCTS));
            let now = i64::try_from(rng.below(1 << 40)).unwrap_or_default();
            on_pool!(layer, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query(&sql.insert).bind(key).bind(now).execute(&mut *tx).await?;
                sqlx::query(sql.update).bind(now).bind(&other).execute(&mut *tx).await?;
                tx.commit().await?;
            });
        }
    }
    Ok(())
}

/// CPU time of this process so far, in nanoseconds: every thread's time on a CPU from
/// `/proc/self/task/*/schedstat` (tokio's workers and each SQLite connection's thread), which
/// is precise where `/proc/self/stat`'s clock ticks are not. Zero where there is no `/proc`.
fn cpu_nanos() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Runs `total` queries of `op` spread over `callers` tasks; returns wall-clock µs per query
/// (elapsed / queries), this process's CPU µs per query, and the number of failed queries.
async fn timed(
    layer: &Layer,
    sql: &Arc<Sql>,
    op: Op,
    callers: usize,
    total: usize,
    tag: &str,
) -> Result<(f64, f64, u64), Error> {
    let per_caller = total / callers;
    let cpu_start = cpu_nanos();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        let layer = layer.clone();
        let sql = Arc::clone(sql);
        let tag = format!("{tag}-{caller}");
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(
                tag.bytes()
                    .fold(7_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
            );
            let mut failed = 0;
            for i in 0..per_caller {
                if run_op(&layer, &sql, op, &format!("{tag}-{i}"), &mut rng)
                    .await
                    .is_err()
                {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await?;
    }
    let micros = start.elapsed().as_secs_f64() * 1e6;
    let cpu_micros = cpu_nanos().saturating_sub(cpu_start) as f64 / 1e3;
    let queries = (per_caller * callers) as f64;
    Ok((micros / queries, cpu_micros / queries, failed))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The pragmas `meshmart::db` sets on every SQLite connection, with the busy timeout given.
fn pragmas(busy: Duration) -> Vec<String> {
    vec![
        "PRAGMA journal_mode = WAL".to_owned(),
        format!("PRAGMA busy_timeout = {}", busy.as_millis()),
        "PRAGMA foreign_keys = ON".to_owned(),
        "PRAGMA synchronous = NORMAL".to_owned(),
    ]
}

/// Pool options as `meshmart::db` sets them, for any database type.
fn options<DB: sqlx::Database>(
    max: u32,
    sqlite_busy: Option<Duration>,
    acquire_timeout: Duration,
) -> PoolOptions<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let pragmas = sqlite_busy.map(pragmas).unwrap_or_default();
    PoolOptions::<DB>::new()
        .max_connections(max)
        .test_before_acquire(false)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            let pragmas = pragmas.clone();
            Box::pin(async move {
                for pragma in &pragmas {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// A fresh database for one part of the benchmark; returns its URL.
async fn fresh_database(
    backend: Backend,
    dir: &std::path::Path,
    pg_admin: Option<&str>,
    name: &str,
) -> Result<String, Error> {
    match (backend, pg_admin) {
        (Backend::Sqlite, _) => {
            let path = dir.join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
            Ok(format!("sqlite://{}?mode=rwc", path.display()))
        }
        (Backend::Postgres, Some(admin)) => {
            let db = format!("store_bench_{name}_{}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
            Ok(format!("{base}/{db}"))
        }
        (Backend::Postgres, None) => Err(Error::Usage("no PostgreSQL server".to_owned())),
    }
}

async fn seed_products(layer: &Layer) -> Result<(), Error> {
    on_pool!(layer, pool => {
        let mut tx = pool.begin().await?;
        for n in 0..PRODUCTS {
            sqlx::query(&format!(
                "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, 'A demo product with a description of some length', 'EUR', $3, 990000000, 1, 1)"
            ))
            .bind(product_id(n))
            .bind(format!("Product {n}"))
            .bind(i64::try_from(n).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

#[derive(Debug)]
struct Comparison {
    backend: Backend,
    op: Op,
    callers: usize,
    any_us: f64,
    typed_us: f64,
    ratio: f64,
    ratio_min: f64,
    ratio_max: f64,
    any_cpu: f64,
    typed_cpu: f64,
    cpu_ratio: f64,
    failed: u64,
}

/// Part 1 on one backend: every query through both layers, in alternating order per round.
async fn compare(
    backend: Backend,
    url: &str,
    rounds: usize,
    out: &mut Vec<Comparison>,
) -> Result<String, Error> {
    let sqlite_busy = (backend == Backend::Sqlite).then_some(BUSY_TODAY);
    let acquire = Duration::from_secs(30);
    let any = Layer::Any(
        options::<sqlx::Any>(POOL_SIZE, sqlite_busy, acquire)
            .connect(url)
            .await?,
    );
    let typed = match backend {
        Backend::Sqlite => Layer::Sqlite(
            options::<sqlx::Sqlite>(POOL_SIZE, sqlite_busy, acquire)
                .connect(url)
                .await?,
        ),
        Backend::Postgres => Layer::Postgres(
            options::<sqlx::Postgres>(POOL_SIZE, None, acquire)
                .connect(url)
                .await?,
        ),
    };
    match &typed {
        Layer::Sqlite(pool) => CATALOG.run(pool).await?,
        Layer::Postgres(pool) => CATALOG.run(pool).await?,
        Layer::Any(pool) => CATALOG.run(pool).await?,
    }
    seed_products(&typed).await?;
    let version_sql = match backend {
        Backend::Sqlite => "SELECT sqlite_version()",
        Backend::Postgres => "SELECT current_setting('server_version')",
    };
    let (version,): (String,) =
        on_pool!(&typed, pool => sqlx::query_as(version_sql).fetch_one(pool).await?);
    let sql = Arc::new(Sql::new());
    for op in [Op::Point, Op::In10, Op::Write] {
        for callers in [1, 16] {
            eprintln!(
                "store-bench: {} {} with {callers} callers",
                backend.name(),
                op.name()
            );
            // Warm-up: opens every connection and prepares the statements on each.
            for (name, layer) in [("any", &any), ("typed", &typed)] {
                timed(layer, &sql, op, 16, 320, &format!("warm-{name}-{callers}")).await?;
            }
            let (mut any_us, mut typed_us, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            let (mut any_cpu, mut typed_cpu, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
            let mut failed = 0;
            for round in 0..rounds {
                let mut pair = [0.0; 2];
                let mut cpu = [0.0; 2];
                // Alternate which layer goes first, so drift in the machine's load does not
                // favour one of them.
                let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for index in order {
                    let (name, layer) = if index == 0 {
                        ("any", &any)
                    } else {
                        ("typed", &typed)
                    };
                    let tag = format!("{name}-{callers}-{round}");
                    let (us, cpu_us, f) =
                        timed(layer, &sql, op, callers, op.per_round(), &tag).await?;
                    pair[index] = us;
                    cpu[index] = cpu_us;
                    failed += f;
                }
                any_us.push(pair[0]);
                typed_us.push(pair[1]);
                ratios.push(pair[0] / pair[1]);
                any_cpu.push(cpu[0]);
                typed_cpu.push(cpu[1]);
                cpu_ratios.push(cpu[0] / cpu[1]);
            }
            let ratio_min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let ratio_max = ratios.iter().copied().fold(0.0, f64::max);
            out.push(Comparison {
                backend,
                op,
                callers,
                any_us: median(&mut any_us),
                typed_us: median(&mut typed_us),
                ratio: median(&mut ratios),
                ratio_min,
                ratio_max,
                any_cpu: median(&mut any_cpu),
                typed_cpu: median(&mut typed_cpu),
                cpu_ratio: median(&mut cpu_ratios),
                failed,
            });
        }
    }
    on_pool!(&any, pool => pool.close().await);
    on_pool!(&typed, pool => pool.close().await);
    Ok(format!("{} {version}", backend.name()))
}

/// How the writers reach SQLite.
#[derive(Debug, Clone, Copy)]
struct WriterSetup {
    name: &'static str,
    busy: Duration,
    dedicated_writer: bool,
}

const WRITER_SETUPS: [WriterSetup; 3] = [
    WriterSetup {
        name: "shared pool of 8, busy timeout 10 s (today)",
        busy: BUSY_TODAY,
        dedicated_writer: false,
    },
    WriterSetup {
        name: "shared pool of 8, busy timeout 1 s",
        busy: BUSY_PLANNED,
        dedicated_writer: false,
    },
    WriterSetup {
        name: "one writer connection (waits up to 1 s) + 8 for reads",
        busy: BUSY_PLANNED,
        dedicated_writer: true,
    },
];

const WRITERS: usize = 16;
/// Reader tasks beside the writers: none, to see the writers alone, then a few in a closed
/// loop, to see what the writers do to reads (and the reads' CPU to the writers).
const READERS: [usize; 2] = [0, 4];
const TXNS_PER_WRITER: usize = 150;

#[derive(Debug)]
struct WriterResult {
    setup: WriterSetup,
    readers: usize,
    throughput: f64,
    reads_per_sec: f64,
    ok: u64,
    busy: u64,
    locked: u64,
    pool_timeouts: u64,
    other: u64,
    write: Histogram<u64>,
    read: Histogram<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Outcomes {
    ok: u64,
    busy: u64,
    locked: u64,
    pool_timeouts: u64,
    other: u64,
}

impl Outcomes {
    fn count(&mut self, result: &Result<(), sqlx::Error>) {
        match result {
            Ok(()) => self.ok += 1,
            Err(sqlx::Error::PoolTimedOut) => self.pool_timeouts += 1,
            Err(sqlx::Error::Database(db)) => {
                // Primary result code: SQLite reports extended codes (517 is BUSY_SNAPSHOT).
                let code = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                match code {
                    Some(5) => self.busy += 1,
                    Some(6) => self.locked += 1,
                    _ => self.other += 1,
                }
            }
            Err(_) => self.other += 1,
        }
    }

    fn add(&mut self, other: Self) {
        self.ok += other.ok;
        self.busy += other.busy;
        self.locked += other.locked;
        self.pool_timeouts += other.pool_timeouts;
        self.other += other.other;
    }
}

/// Inventory's `reserve`: claim the reservation id, hold three products in id order.
async fn reserve(
    pool: &SqlitePool,
    reservation_id: &str,
    rng: &mut Rng,
) -> Result<(), sqlx::Error> {
    let mut products: Vec<String> = (0..3).map(|_| product_id(rng.below(STOCKED))).collect();
    products.sort();
    products.dedup();
    let now = i64::try_from(rng.below(1 << 40)).unwrap_or_default();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO reservations (reservation_id, state, create_time_ms, update_time_ms) VALUES ($1, 'ACTIVE', $2, $2) \
         ON CONFLICT (reservation_id) DO NOTHING",
    )
    .bind(reservation_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for product in &products {
        sqlx::query(
            "UPDATE stock SET available = available - $2, reserved = reserved + $2, update_time_ms = $3 \
             WHERE product_id = $1 AND available >= $2",
        )
        .bind(product)
        .bind(1_i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES ($1, $2, $3)",
        )
        .bind(reservation_id)
        .bind(product)
        .bind(1_i64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

fn histogram() -> Result<Histogram<u64>, Error> {
    // Microseconds, three significant digits; it grows as needed, so nothing recorded is lost.
    Ok(Histogram::new(3)?)
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Part 2, one round of one setup on a fresh SQLite file.
/// What one round measured: committed tx/s, reads/s, outcomes, write and read latencies.
type Round = (f64, f64, Outcomes, Histogram<u64>, Histogram<u64>);

async fn writer_round(
    dir: &std::path::Path,
    setup: WriterSetup,
    readers_count: usize,
    name: &str,
) -> Result<Round, Error> {
    let url = fresh_database(Backend::Sqlite, dir, None, name).await?;
    let readers = options::<sqlx::Sqlite>(POOL_SIZE, Some(setup.busy), Duration::from_secs(30))
        .connect(&url)
        .await?;
    INVENTORY.run(&readers).await?;
    for n in 0..STOCKED {
        sqlx::query("INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, 1000000000, 0, 0)")
            .bind(product_id(n))
            .execute(&readers)
            .await?;
    }
    let writer = if setup.dedicated_writer {
        // Waiting for the one connection replaces waiting for the lock, with the same bound.
        let writer = options::<sqlx::Sqlite>(1, Some(setup.busy), setup.busy).connect_lazy(&url)?;
        // Open the connection before the clock starts; on a loaded machine the first open
        // may take longer than the wait the writers are allowed.
        let mut opened = writer.acquire().await;
        for _ in 0..5 {
            if opened.is_ok() {
                break;
            }
            opened = writer.acquire().await;
        }
        drop(opened?);
        writer
    } else {
        readers.clone()
    };
    let done = Arc::new(AtomicBool::new(false));
    let mut read_tasks = Vec::new();
    for reader in 0..readers_count {
        let pool = readers.clone();
        let done = Arc::clone(&done);
        read_tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + reader as u64);
            let mut latencies = histogram()?;
            let mut outcomes = Outcomes::default();
            // Bounded, in case the writers never finish.
            for _ in 0..1_000_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let start = Instant::now();
                let result = sqlx::query_as::<_, (i64, i64)>(
                    "SELECT available, reserved FROM stock WHERE product_id = $1",
                )
                .bind(product_id(rng.below(STOCKED)))
                .fetch_one(&pool)
                .await
                .map(|row| {
                    black_box(row);
                });
                let _ = latencies.record(micros(start.elapsed()));
                outcomes.count(&result);
            }
            Ok::<_, Error>((latencies, outcomes))
        }));
    }
    let start = Instant::now();
    let mut write_tasks = Vec::new();
    for task in 0..WRITERS {
        let pool = writer.clone();
        write_tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(task as u64 + 1);
            let mut latencies = histogram()?;
            let mut outcomes = Outcomes::default();
            for i in 0..TXNS_PER_WRITER {
                let begun = Instant::now();
                let result = reserve(&pool, &format!("r-{task}-{i}"), &mut rng).await;
                let _ = latencies.record(micros(begun.elapsed()));
                outcomes.count(&result);
            }
            Ok::<_, Error>((latencies, outcomes))
        }));
    }
    let mut writes = histogram()?;
    let mut outcomes = Outcomes::default();
    for task in write_tasks {
        let (latencies, counted) = task.await??;
        let _ = writes.add(latencies);
        outcomes.add(counted);
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut reads = histogram()?;
    let read_elapsed = start.elapsed();
    for task in read_tasks {
        let (latencies, counted) = task.await??;
        let _ = reads.add(latencies);
        // Reads are not expected to fail; a failure shows in the write columns' "other".
        outcomes.other += counted.busy + counted.locked + counted.pool_timeouts + counted.other;
    }
    writer.close().await;
    readers.close().await;
    let throughput = outcomes.ok as f64 / elapsed.as_secs_f64();
    let reads_per_sec = reads.len() as f64 / read_elapsed.as_secs_f64();
    Ok((throughput, reads_per_sec, outcomes, writes, reads))
}

async fn writers(dir: &std::path::Path, rounds: usize) -> Result<Vec<WriterResult>, Error> {
    let mut cases = Vec::new();
    for readers in READERS {
        for setup in WRITER_SETUPS {
            cases.push((setup, readers));
        }
    }
    let mut results = Vec::new();
    for _ in &cases {
        results.push((
            Vec::new(),
            Vec::new(),
            Outcomes::default(),
            histogram()?,
            histogram()?,
        ));
    }
    for round in 0..rounds {
        for (index, (setup, readers)) in cases.iter().enumerate() {
            eprintln!(
                "store-bench: SQLite writers, {}, {readers} readers, round {}",
                setup.name,
                round + 1
            );
            let (throughput, reads_per_sec, outcomes, writes, reads) =
                writer_round(dir, *setup, *readers, &format!("writers{index}-{round}")).await?;
            let entry = &mut results[index];
            entry.0.push(throughput);
            entry.1.push(reads_per_sec);
            entry.2.add(outcomes);
            let _ = entry.3.add(writes);
            let _ = entry.4.add(reads);
        }
    }
    Ok(results
        .into_iter()
        .zip(cases)
        .map(
            |((mut throughput, mut reads_per_sec, outcomes, write, read), (setup, readers))| {
                WriterResult {
                    setup,
                    readers,
                    throughput: median(&mut throughput),
                    reads_per_sec: median(&mut reads_per_sec),
                    ok: outcomes.ok,
                    busy: outcomes.busy,
                    locked: outcomes.locked,
                    pool_timeouts: outcomes.pool_timeouts,
                    other: outcomes.other,
                    write,
                    read,
                }
            },
        )
        .collect())
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

fn report(
    out: &mut impl Write,
    versions: &[String],
    rounds: usize,
    writer_rounds: usize,
    comparisons: &[Comparison],
    writers: &[WriterResult],
) -> std::io::Result<()> {
    writeln!(out, "Databases: {}.\n", versions.join(", "))?;
    writeln!(out, "## Any against the typed pools\n")?;
    writeln!(
        out,
        "Wall-clock µs per query (elapsed / queries; with 16 callers that is the inverse of \
         throughput), median of {rounds} rounds; each round runs the Any pool and the typed pool \
         back to back, in alternating order. *Any/typed* is the median of the per-round ratios, \
         with their range. *CPU µs* is this process's CPU time per query (every thread: tokio's \
         workers and each SQLite connection's thread; not the PostgreSQL server's), which other \
         work on the machine disturbs less than wall-clock time. Pools of {POOL_SIZE} \
         connections, set up as `meshmart::db` sets its pool.\n"
    )?;
    writeln!(
        out,
        "| backend | query | callers | Any µs/query | typed µs/query | **Any/typed** | range | Any CPU µs | typed CPU µs | **CPU Any/typed** | failed |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")?;
    for c in comparisons {
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | **{:.2}** | {:.2}–{:.2} | {:.1} | {:.1} | **{:.2}** | {} |",
            c.backend.name(),
            c.op.name(),
            c.callers,
            c.any_us,
            c.typed_us,
            c.ratio,
            c.ratio_min,
            c.ratio_max,
            c.any_cpu,
            c.typed_cpu,
            c.cpu_ratio,
            c.failed
        )?;
    }
    writeln!(out, "\n## SQLite: {WRITERS} concurrent writers\n")?;
    writeln!(
        out,
        "{WRITERS} tasks each run {TXNS_PER_WRITER} reservation-like write transactions (claim a \
         reservation id, hold three products in id order: 7 statements and a commit), alone and \
         beside 4 tasks reading stock rows in a closed loop through the pool of {POOL_SIZE} (which is \
         the writers' pool too, except with one writer connection). {writer_rounds} rounds per \
         case, interleaved, each on a fresh file; tx/s and reads/s are the median round, latencies \
         are over every transaction of every round, including the wait for a connection. Failed \
         transactions are counted, not retried; SQLITE_BUSY counts every busy code (`code & 0xff \
         == 5`).\n"
    )?;
    writeln!(
        out,
        "| setup | readers | committed tx/s | reads/s | committed | SQLITE_BUSY | SQLITE_LOCKED | pool timeouts | other errors | write p50 ms | write p99 ms | write max ms | read p99 ms |"
    )?;
    writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for w in writers {
        let (reads, read_p99) = if w.readers == 0 {
            ("–".to_owned(), "–".to_owned())
        } else {
            (
                format!("{:.0}", w.reads_per_sec),
                format!("{:.2}", ms(&w.read, 0.99)),
            )
        };
        writeln!(
            out,
            "| {} | {} | {:.0} | {reads} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {read_p99} |",
            w.setup.name,
            w.readers,
            w.throughput,
            w.ok,
            w.busy,
            w.locked,
            w.pool_timeouts,
            w.other,
            ms(&w.write, 0.5),
            ms(&w.write, 0.99),
            w.write.max() as f64 / 1000.0,
        )?;
    }
    Ok(())
}

struct Args {
    dir: PathBuf,
    rounds: usize,
}

fn args() -> Result<Args, Error> {
    let mut parsed = Args {
        dir: std::env::temp_dir().join(format!("meshmart-store-bench-{}", std::process::id())),
        rounds: 7,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| Error::Usage(format!("{arg} needs a value")))?;
        match arg.as_str() {
            "--dir" => parsed.dir = PathBuf::from(value),
            "--rounds" => {
                parsed.rounds = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Usage(format!("--rounds {value}: a whole number above 0"))
                })?;
            }
            _ => {
                return Err(Error::Usage(format!(
                    "unknown argument {arg}; usage: store-bench [--dir DIR] [--rounds N]"
                )));
            }
        }
    }
    Ok(parsed)
}

async fn run() -> Result<(), Error> {
    let args = args()?;
    install_default_drivers();
    std::fs::create_dir_all(&args.dir)?;
    let pg_admin = std::env::var("MESHMART_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let mut comparisons = Vec::new();
    let url = fresh_database(Backend::Sqlite, &args.dir, None, "compare").await?;
    let mut versions = vec![compare(Backend::Sqlite, &url, args.rounds, &mut comparisons).await?];
    if let Some(admin) = pg_admin.as_deref() {
        let url = fresh_database(Backend::Postgres, &args.dir, Some(admin), "compare").await?;
        versions.push(compare(Backend::Postgres, &url, args.rounds, &mut comparisons).await?);
    } else {
        eprintln!("store-bench: MESHMART_TEST_POSTGRES_URL is not set; SQLite only");
    }
    let writer_rounds = args.rounds.min(3);
    let writers = writers(&args.dir, writer_rounds).await?;
    let _ = std::fs::remove_dir_all(&args.dir);
    report(
        &mut std::io::stdout().lock(),
        &versions,
        args.rounds,
        writer_rounds,
        &comparisons,
        &writers,
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("store-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
