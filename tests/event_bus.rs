//! The event bus's behaviour suite (`meshmart::events::suite`), run against each broker,
//! and what only the embedded log has to prove: separate OS processes share its file, and
//! a process killed with SIGKILL loses neither a publish that returned nor a delivery it
//! held, and an answer that comes after its lease passed to another member is ignored.
//!
//! A broker joins the suite with one block: a [`Broker`] that connects to it, a function
//! giving `Some` of it (or `None` to skip), and `meshmart::event_bus_suite!`. JetStream runs
//! when `MESHMART_TEST_NATS_URL` names a server (scripts/with-nats.sh), each test on streams
//! and subjects of its own; what only JetStream has to prove is in
//! `tests/event_bus_jetstream.rs`.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use meshmart::events::{
    Consumer, ConsumerConfig, EventBus, Headers, Outgoing, Published,
    embedded::{EmbeddedBus, EmbeddedConfig},
    jetstream::{JetStreamBus, JetStreamOptions},
    suite::{Broker, QUIET, WAIT},
};
use tokio::{
    sync::mpsc,
    time::{Instant, timeout},
};

/// The embedded log in a folder of its own, for one test.
struct Embedded {
    dir: tempfile::TempDir,
}

impl Broker for Embedded {
    type Bus = EmbeddedBus;

    async fn connect(&self) -> meshmart::Result<EmbeddedBus> {
        EmbeddedBus::open(&EmbeddedConfig::at(self.dir.path().join("events.db"))).await
    }
}

async fn embedded() -> Option<Embedded> {
    Some(Embedded {
        dir: tempfile::tempdir().unwrap(),
    })
}

/// A JetStream server, with streams of this test's own: their subjects, replay and
/// dead-letter prefixes all start with a token no other test uses.
struct JetStream {
    url: String,
    options: JetStreamOptions,
    root: String,
}

impl Broker for JetStream {
    type Bus = JetStreamBus;

    async fn connect(&self) -> meshmart::Result<JetStreamBus> {
        JetStreamBus::connect(&self.url, self.options.clone()).await
    }

    fn subject_root(&self) -> &str {
        &self.root
    }
}

async fn jetstream() -> Option<JetStream> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let url = meshmart::events::suite::nats_test_url()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = format!(
        "s{:x}{}x{}",
        nanos % (1 << 48),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let options = JetStreamOptions {
        stream: format!("{root}_EVENTS"),
        subjects: vec![format!("{root}.>")],
        replay_prefix: format!("{root}_replay"),
        dead_letter_stream: format!("{root}_DLQ"),
        dead_letter_prefix: format!("{root}_dlq"),
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(3600),
        connect_timeout: WAIT,
        client_name: format!("meshmart-suite-{root}"),
        ..JetStreamOptions::default()
    };
    Some(JetStream { url, options, root })
}

mod jetstream {
    meshmart::event_bus_suite!(super::jetstream());
}

mod embedded {
    meshmart::event_bus_suite!(super::embedded());
}

/// The embedded log behind [`meshmart::events::Bus`], as the services hold it: the enum
/// passes every promise on.
struct ChosenByConfig {
    dir: tempfile::TempDir,
}

impl Broker for ChosenByConfig {
    type Bus = meshmart::events::Bus;

    async fn connect(&self) -> meshmart::Result<meshmart::events::Bus> {
        let env =
            meshmart::config::Env::from_pairs([("DATA_DIR", self.dir.path().to_str().unwrap())]);
        meshmart::events::connect(&meshmart::events::EventsConfig::from_env(&env).unwrap()).await
    }
}

async fn chosen_by_config() -> Option<ChosenByConfig> {
    Some(ChosenByConfig {
        dir: tempfile::tempdir().unwrap(),
    })
}

mod chosen_by_config {
    meshmart::event_bus_suite!(super::chosen_by_config());
}

// ---- Child processes: this test binary run again, as `child`, with a role. ----

const ROLE: &str = "MESHMART_EVENT_BUS_CHILD";
const PATH: &str = "MESHMART_EVENT_BUS_PATH";
const ARG: &str = "MESHMART_EVENT_BUS_ARG";
/// What begins a child's report on its standard output.
const MARK: &str = "[event bus child] ";

/// How long a child lives at most: killed by its test long before, but never an orphan
/// for good if the test dies first.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn job_group(root: &str) -> ConsumerConfig {
    ConsumerConfig {
        name: format!("workers_{}", root.replace('.', "_")),
        subjects: vec![format!("{root}.jobs")],
        ack_wait: Duration::from_secs(1),
        max_attempts: 3,
        backoff: vec![],
    }
}

fn outgoing(subject: String, message_id: String, headers: Headers) -> Outgoing {
    Outgoing {
        payload: message_id.clone().into_bytes().into(),
        subject,
        message_id,
        headers,
    }
}

/// Not a test of its own: what a child process does, as `ROLE` says; nothing without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = std::env::var(PATH).unwrap();
    let arg = std::env::var(ARG).unwrap();
    let bus = EmbeddedBus::open(&EmbeddedConfig::at(path)).await.unwrap();
    let _ = timeout(CHILD_LIFETIME, async {
        match role.as_str() {
            // Takes jobs from its group's share and reports each one done, with its pid.
            "worker" => {
                let mut jobs = bus.consumer(&job_group(&arg)).await.unwrap();
                println!("{MARK}ready");
                loop {
                    let job = jobs.next().await.unwrap();
                    // A little work, so the other worker's polls find jobs left to take.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let headers = [("worker".to_owned(), std::process::id().to_string())].into();
                    let id = format!("{}.{}.{}", job.message_id, std::process::id(), job.attempt);
                    let done = outgoing(format!("{arg}.done"), id, headers);
                    assert_eq!(bus.publish(done).await.unwrap(), Published::Stored);
                    job.ack().await.unwrap();
                }
            }
            // Answers every job at once with a done event: one hop there, one back.
            "echo" => {
                let mut jobs = bus.consumer(&job_group(&arg)).await.unwrap();
                println!("{MARK}ready");
                loop {
                    let job = jobs.next().await.unwrap();
                    let id = format!("{}.echo", job.message_id);
                    let done = outgoing(format!("{arg}.done"), id, Headers::new());
                    bus.publish(done).await.unwrap();
                    job.ack().await.unwrap();
                }
            }
            // Publishes one event, says so, and waits to be killed.
            "publish" => {
                let event = outgoing(format!("{arg}.jobs"), format!("{arg}-kept"), Headers::new());
                assert_eq!(bus.publish(event).await.unwrap(), Published::Stored);
                println!("{MARK}published");
                std::future::pending::<()>().await;
            }
            // Claims one job, says which, and waits to be killed without answering.
            "claim" => {
                let mut jobs = bus.consumer(&job_group(&arg)).await.unwrap();
                let job = jobs.next().await.unwrap();
                println!("{MARK}claimed {} {}", job.message_id, job.attempt);
                std::future::pending::<()>().await;
            }
            other => panic!("unknown child role {other}"),
        }
    })
    .await;
}

/// A child process, killed when dropped.
struct ChildProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildProcess {
    fn spawn(role: &str, path: &Path, arg: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(PATH, path)
            .env(ARG, arg)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::unbounded_channel();
        // std's pipes block; a thread of its own hands the child's lines over.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have begun the line with the test's name.
                if let Some((_, said)) = line.split_once(MARK) {
                    let _ = send.send(said.to_owned());
                }
            }
        });
        Self { child, lines }
    }

    /// The child's next report, which must come within the wait.
    async fn said(&mut self) -> String {
        timeout(WAIT, self.lines.recv())
            .await
            .expect("the child reports within the wait")
            .expect("the child exited without reporting")
    }

    /// SIGKILL, and proof that the signal is what ended it.
    fn kill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("events.db")
}

/// Two worker processes share one group's jobs through one file: the parent publishes,
/// the workers consume and publish back, and every job is done exactly once, by both
/// workers between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let root = "procs";
    let bus = EmbeddedBus::open(&EmbeddedConfig::at(&path)).await.unwrap();
    let mut done = bus
        .consumer(&ConsumerConfig {
            name: "collector".to_owned(),
            subjects: vec![format!("{root}.done")],
            ..job_group(root)
        })
        .await
        .unwrap();
    let mut workers = [
        ChildProcess::spawn("worker", &path, root),
        ChildProcess::spawn("worker", &path, root),
    ];
    for worker in &mut workers {
        assert_eq!(worker.said().await, "ready");
    }
    let jobs: Vec<String> = (0..30).map(|n| format!("job{n}")).collect();
    for job in &jobs {
        let event = outgoing(format!("{root}.jobs"), job.clone(), Headers::new());
        assert_eq!(bus.publish(event).await.unwrap(), Published::Stored);
    }

    let mut by_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while by_job.len() < jobs.len() {
        let report = timeout(deadline - Instant::now(), done.next())
            .await
            .unwrap_or_else(|_| panic!("jobs done so far: {by_job:?}"))
            .unwrap();
        let job = report.message_id.split('.').next().unwrap().to_owned();
        let worker = report.headers["worker"].clone();
        by_job.entry(job).or_default().push(worker.clone());
        *by_worker.entry(worker).or_default() += 1;
        report.ack().await.unwrap();
    }
    if let Ok(extra) = timeout(QUIET, done.next()).await {
        panic!("a job was done twice: {:?}", extra.unwrap());
    }
    assert_eq!(by_job.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = jobs.clone();
        sorted.sort();
        sorted
    });
    assert_eq!(by_worker.len(), 2, "both workers took jobs: {by_worker:?}");
}

/// A child that published (its publish returned) and was then killed with SIGKILL: the
/// event is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_publish_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let root = "killed";
    let mut publisher = ChildProcess::spawn("publish", &path, root);
    assert_eq!(publisher.said().await, "published");
    publisher.kill();

    let bus = EmbeddedBus::open(&EmbeddedConfig::at(&path)).await.unwrap();
    let mut jobs = bus.consumer(&job_group(root)).await.unwrap();
    let kept = timeout(WAIT, jobs.next()).await.unwrap().unwrap();
    assert_eq!(
        (kept.subject.as_str(), kept.message_id.as_str()),
        ("killed.jobs", "killed-kept")
    );
}

/// A child that claimed a delivery and was killed with SIGKILL before answering: the
/// delivery comes back to another member after `ack_wait`, as the next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_a_killed_process_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let root = "claimed";
    let config = job_group(root);
    let bus = EmbeddedBus::open(&EmbeddedConfig::at(&path)).await.unwrap();
    let mut jobs = bus.consumer(&config).await.unwrap();
    let event = outgoing(format!("{root}.jobs"), "job1".to_owned(), Headers::new());
    bus.publish(event).await.unwrap();

    // This process's member waits only once the child holds the job.
    let mut claimer = ChildProcess::spawn("claim", &path, root);
    assert_eq!(claimer.said().await, "claimed job1 1");
    let claimed = Instant::now();
    claimer.kill();
    let again = timeout(WAIT, jobs.next()).await.unwrap().unwrap();
    assert!(
        claimed.elapsed() >= config.ack_wait / 2,
        "redelivered after {:?}",
        claimed.elapsed()
    );
    assert_eq!((again.message_id.as_str(), again.attempt), ("job1", 2));
    again.ack().await.unwrap();
}

/// CPU time of this process so far (Linux: utime + stime from /proc, in clock ticks of
/// 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// The figures docs/architecture.md quotes for the poll interval, not an assertion:
/// `cargo test -p meshmart --features testing --test event_bus -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn measure_idle_cost_and_hop_latency() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let bus = EmbeddedBus::open(&EmbeddedConfig::at(&path)).await.unwrap();

    // Idle: consumers waiting on groups with nothing to deliver.
    let idle = 4;
    let mut waiting = Vec::new();
    for n in 0..idle {
        let mut consumer = bus.consumer(&job_group(&format!("idle{n}"))).await.unwrap();
        waiting.push(tokio::spawn(async move { consumer.next().await.map(drop) }));
    }
    // Past the watcher's busy spell after the groups were created.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu, wall) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let share = (cpu_time() - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
    println!(
        "idle: {idle} consumers use {:.2}% of a core, {:.2}% each",
        share * 100.0,
        share * 100.0 / f64::from(idle)
    );
    for task in waiting {
        task.abort();
    }

    // Two hops across processes: publish here, the child consumes and publishes back.
    let root = "latency";
    let mut done = bus
        .consumer(&ConsumerConfig {
            name: "collector".to_owned(),
            subjects: vec![format!("{root}.done")],
            ..job_group(root)
        })
        .await
        .unwrap();
    let mut echo = ChildProcess::spawn("echo", &path, root);
    assert_eq!(echo.said().await, "ready");
    let mut round_trip = async |n: usize| {
        let sent = Instant::now();
        let event = outgoing(format!("{root}.jobs"), format!("ping{n}"), Headers::new());
        bus.publish(event).await.unwrap();
        let back = timeout(WAIT, done.next()).await.unwrap().unwrap();
        back.ack().await.unwrap();
        sent.elapsed()
    };
    for quiet in 0..5 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!(
            "two hops after 3 s of quiet: {:?}",
            round_trip(1000 + quiet).await
        );
    }
    let mut round_trips = Vec::new();
    // Pauses of 0 to 19 ms between pings, so they do not fall into step with the polls.
    let mut jitter: u64 = 12345;
    for n in 0..200 {
        jitter = jitter
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        tokio::time::sleep(Duration::from_millis((jitter >> 33) % 20)).await;
        round_trips.push(round_trip(n).await);
    }
    round_trips.sort();
    let at = |q: f64| round_trips[((round_trips.len() - 1) as f64 * q) as usize];
    println!(
        "two hops across processes: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

/// An answer that comes after its lease ran out and another member claimed the delivery
/// changes nothing (the attempt count is the lease token): the later claim decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_does_not_undo_a_later_claim() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(&EmbeddedConfig::at(log_path(&dir)))
        .await
        .unwrap();
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(300),
        ..job_group("late")
    };
    let (mut slow, mut other) = (
        bus.consumer(&config).await.unwrap(),
        bus.consumer(&config).await.unwrap(),
    );
    let event = outgoing("late.jobs".to_owned(), "job1".to_owned(), Headers::new());
    bus.publish(event).await.unwrap();
    let stale = timeout(WAIT, slow.next()).await.unwrap().unwrap();
    let current = timeout(WAIT, other.next()).await.unwrap().unwrap();
    assert_eq!((stale.attempt, current.attempt), (1, 2));
    // Acked too late: had it landed, the nak below would find the delivery done.
    stale.ack().await.unwrap();
    current.nak(Duration::ZERO).await.unwrap();
    let again = timeout(WAIT, other.next()).await.unwrap().unwrap();
    assert_eq!((again.message_id.as_str(), again.attempt), ("job1", 3));
    again.ack().await.unwrap();
    if let Ok(extra) = timeout(config.ack_wait * 3, slow.next()).await {
        panic!("acked, yet delivered again: {:?}", extra.unwrap());
    }
    bus.close().await;
}

/// Several processes opening a log that does not exist yet, at once, as `meshctl up` starts
/// its services: each creates or finds the schema, and each one's publish is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_open_a_new_log_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut publishers: Vec<ChildProcess> = (0..4)
        .map(|n| ChildProcess::spawn("publish", &path, &format!("start{n}")))
        .collect();
    for publisher in &mut publishers {
        assert_eq!(publisher.said().await, "published");
    }
    drop(publishers);
    let bus = EmbeddedBus::open(&EmbeddedConfig::at(&path)).await.unwrap();
    let mut everything = bus
        .consumer(&ConsumerConfig {
            name: "everything".to_owned(),
            subjects: vec![">".to_owned()],
            ..job_group("start")
        })
        .await
        .unwrap();
    let mut subjects = Vec::new();
    for _ in 0..4 {
        let delivery = timeout(WAIT, everything.next()).await.unwrap().unwrap();
        subjects.push(delivery.subject.clone());
        delivery.ack().await.unwrap();
    }
    subjects.sort();
    assert_eq!(
        subjects,
        ["start0.jobs", "start1.jobs", "start2.jobs", "start3.jobs"]
    );
}
