//! Driving the calls: closed loop (N callers) or open loop (a fixed schedule), for a
//! bounded time or count, or in reporting windows until stopped.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use meshmart::proto::orders::order_service_client::OrderServiceClient;
use tonic::transport::Channel;

use tokio::{
    sync::{Mutex, watch},
    time::Instant,
};

use crate::{
    Error,
    client::{self, Clients, Data},
    flow::{self, FlowStats},
    options::{Load, Options},
    scenario::{Mix, Rng, Scenario},
    stats::{Report, Stats},
};

/// A call sent later than this after it was due counts as a late send.
const LATE: Duration = Duration::from_millis(1);

/// Open loop: tokio's timer fires on whole milliseconds, up to ~2 ms after the deadline.
/// Counting latency from the due time (as it must be) would then charge that slop to the
/// service. So a caller sleeps until this long before its due time and yields until then:
/// sends land within microseconds of schedule, for a little CPU in the load generator.
const SPIN: Duration = Duration::from_millis(2);

/// Callers record into one of this many locked [`Stats`], so that a run with thousands of
/// callers does not hold thousands of histograms (each is about 140 KiB), while callers
/// rarely meet on a lock.
const SHARDS: usize = 16;

/// Waits for every service to report SERVING, connects, finds products, and runs the load
/// that `options` describe until it is done or `stop` turns true. With a duration or a
/// request budget that is one run; without either it is a window of `report_interval`
/// after another, each passed to `on_window` as it ends. Returns the report of the whole run.
pub async fn execute(
    options: &Options,
    mut stop: watch::Receiver<bool>,
    mut on_window: impl FnMut(&Report),
) -> Result<Report, Error> {
    tokio::select! {
        ready = client::wait_until_serving(options) => ready?,
        Ok(()) = stop.changed() => return Err(Error::Stopped),
    }
    let pool = client::connect(options).await?;
    let products = match pool.first() {
        Some(clients) if options.mix.scenarios().any(|s| s == Scenario::GetProduct) => {
            client::discover_products(clients).await?
        }
        _ => Vec::new(),
    };
    tracing::info!(
        mix = %options.mix,
        load = options.load.kind(),
        products = products.len(),
        connections = options.connections,
        "starting load"
    );
    let data = Arc::new(Data {
        products,
        page_size: options.page_size,
        echo_message: "x".repeat(options.echo_bytes),
        timeout: options.timeout,
        request_prefix: client::request_prefix(),
        sequence: AtomicU64::new(0),
    });
    let placing = options.mix.has(Scenario::PlaceOrder);
    if placing && let Some(clients) = pool.first() {
        client::restock(clients, &data).await?;
    }
    let orders: Vec<OrderServiceClient<Channel>> =
        pool.iter().filter_map(Clients::orders).collect();

    let bounded = options.duration.is_some() || options.max_requests.is_some();
    if bounded {
        let plan = Plan {
            warmup: options.warmup,
            duration: options.duration,
            max_requests: options.max_requests,
        };
        let (mut stats, elapsed) = run(options, &plan, &pool, &data, 0, stop).await?;
        let mut report = stats.report(options.load, elapsed);
        if placing {
            let flow = settle(options, &orders, &mut stats).await;
            report.orders = Some(flow.report(elapsed, options.settle_timeout));
        }
        return Ok(report);
    }

    // Without an end: report every window, so a long-running Deployment's log shows how
    // the shop behaves now rather than since it started.
    let mut total = Stats::new()?;
    let mut total_flow = FlowStats::default();
    let mut total_elapsed = Duration::ZERO;
    let mut window = 0u64;
    loop {
        let plan = Plan {
            warmup: if window == 0 {
                options.warmup
            } else {
                Duration::ZERO
            },
            duration: Some(options.report_interval),
            max_requests: None,
        };
        let (mut stats, elapsed) = run(options, &plan, &pool, &data, window, stop.clone()).await?;
        let mut report = stats.report(options.load, elapsed);
        if placing {
            // The load pauses while the window's orders settle: a window's report then
            // covers the orders it placed, and the next starts on a flow that caught up.
            let flow = settle(options, &orders, &mut stats).await;
            report.orders = Some(flow.report(elapsed, options.settle_timeout));
            total_flow.merge(&flow);
        }
        on_window(&report);
        total.merge(&stats);
        total_elapsed += elapsed;
        window += 1;
        if *stop.borrow() {
            break;
        }
    }
    let mut report = total.report(options.load, total_elapsed);
    if placing {
        report.orders = Some(total_flow.report(total_elapsed, options.settle_timeout));
    }
    Ok(report)
}

/// Waits for the orders the run placed to reach a final state, and reads their histories.
/// The names are taken out of `stats`, so windows merged later do not carry them.
async fn settle(
    options: &Options,
    orders: &[OrderServiceClient<Channel>],
    stats: &mut Stats,
) -> FlowStats {
    let placed = stats.take_placed();
    tracing::info!(
        orders = placed.len(),
        timeout_secs = options.settle_timeout.as_secs_f64(),
        "waiting for the placed orders to finish"
    );
    flow::settle(orders, placed, options.settle_timeout, options.timeout).await
}

/// The bounds of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warmup: Duration,
    duration: Option<Duration>,
    max_requests: Option<u64>,
}

/// What every caller of one run shares.
struct Shared {
    mix: Mix,
    data: Arc<Data>,
    /// When the schedule begins (the warm-up, if any, starts here).
    start: Instant,
    /// Calls begun from here on are measured.
    measure_start: Instant,
    /// No call begins after this.
    end: Option<Instant>,
    max_requests: Option<u64>,
    /// Measured calls begun so far, against `max_requests`.
    begun: AtomicU64,
    /// Open loop: the next call of the schedule to take.
    next_ticket: AtomicU64,
    shards: Vec<Mutex<Stats>>,
}

impl Shared {
    /// Whether another measured call may begin, counting it if so.
    fn take_budget(&self) -> bool {
        match self.max_requests {
            None => true,
            Some(max) => self.begun.fetch_add(1, Ordering::Relaxed) < max,
        }
    }

    fn ended(&self, at: Instant) -> bool {
        self.end.is_some_and(|end| at >= end)
    }

    async fn record(
        &self,
        caller: usize,
        scenario: Scenario,
        called: client::Called,
        latency: Duration,
        late: bool,
    ) {
        if let Some(shard) = self.shards.get(caller % self.shards.len()) {
            let mut stats = shard.lock().await;
            stats.record(scenario, called.outcome, latency);
            if let Some(order) = called.placed {
                stats.placed(order);
            }
            if late {
                stats.late_send();
            }
        }
    }
}

/// Runs one bounded run and returns its statistics and measured time.
async fn run(
    options: &Options,
    plan: &Plan,
    pool: &[Clients],
    data: &Arc<Data>,
    window: u64,
    stop: watch::Receiver<bool>,
) -> Result<(Stats, Duration), Error> {
    let callers = match options.load {
        Load::Closed { concurrency } => concurrency,
        Load::Open { max_in_flight, .. } => max_in_flight,
    };
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let mut shards = Vec::new();
    for _ in 0..SHARDS.min(callers) {
        shards.push(Mutex::new(Stats::new()?));
    }
    let shared = Arc::new(Shared {
        mix: options.mix.clone(),
        data: Arc::clone(data),
        start,
        measure_start,
        end: plan.duration.map(|d| measure_start + d),
        max_requests: plan.max_requests,
        begun: AtomicU64::new(0),
        next_ticket: AtomicU64::new(0),
        shards,
    });

    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        let shared = Arc::clone(&shared);
        let clients = pool
            .get(caller % pool.len().max(1))
            .cloned()
            .unwrap_or_default();
        // Distinct, reproducible streams per caller and per window.
        let seed =
            options.seed ^ (window << 32) ^ (caller as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let rng = Rng::new(seed);
        let stop = stop.clone();
        tasks.push(match options.load {
            Load::Closed { .. } => tokio::spawn(closed_caller(shared, caller, clients, rng, stop)),
            Load::Open { rate, .. } => {
                tokio::spawn(open_caller(shared, caller, clients, rng, stop, rate))
            }
        });
    }
    for task in tasks {
        task.await.map_err(|e| Error::Caller(e.to_string()))?;
    }
    let ran = Instant::now().saturating_duration_since(measure_start);
    // A run that went its full length is as long as it was planned: an open-loop schedule
    // ends with its last call due before the end, which may return well before it, and
    // the rate must not read higher than the one asked for. A run cut short (stopped, or
    // out of requests) is as long as it ran.
    let cut_short = *stop.borrow()
        || shared
            .max_requests
            .is_some_and(|max| shared.begun.load(Ordering::Relaxed) >= max);
    let elapsed = match plan.duration {
        Some(planned) if !cut_short => ran.max(planned),
        _ => ran,
    };

    let mut stats = Stats::new()?;
    for shard in &shared.shards {
        stats.merge(&*shard.lock().await);
    }
    Ok((stats, elapsed))
}

/// Closed loop: call, wait for the reply, call again.
async fn closed_caller(
    shared: Arc<Shared>,
    caller: usize,
    mut clients: Clients,
    mut rng: Rng,
    stop: watch::Receiver<bool>,
) {
    loop {
        let begun = Instant::now();
        if shared.ended(begun) || *stop.borrow() {
            break;
        }
        let measured = begun >= shared.measure_start;
        if measured && !shared.take_budget() {
            break;
        }
        let scenario = shared.mix.pick(&mut rng);
        let called = client::call(scenario, &mut clients, &shared.data, &mut rng).await;
        if measured {
            shared
                .record(caller, scenario, called, begun.elapsed(), false)
                .await;
        }
    }
}

/// Open loop: take the next due time of the schedule, wait for it, call. Latency counts
/// from the due time, so when every caller is busy (or the generator is starved) the wait
/// for a free caller is part of the latency, as it would be for a real client.
async fn open_caller(
    shared: Arc<Shared>,
    caller: usize,
    mut clients: Clients,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
    rate: f64,
) {
    loop {
        let ticket = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        let due = shared.start + Duration::from_secs_f64(ticket as f64 / rate);
        if shared.ended(due) || *stop.borrow() {
            break;
        }
        let measured = due >= shared.measure_start;
        // Counted before the wait, so that once the budget is spent no caller sleeps on.
        if measured && !shared.take_budget() {
            break;
        }
        if let Some(wake) = due.checked_sub(SPIN).filter(|wake| *wake > Instant::now()) {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                Ok(()) = stop.changed() => break,
            }
        }
        // Bounded: at most SPIN (plus scheduling delays) of yielding.
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
        let late = Instant::now().saturating_duration_since(due) > LATE;
        let scenario = shared.mix.pick(&mut rng);
        let called = client::call(scenario, &mut clients, &shared.data, &mut rng).await;
        if measured {
            shared
                .record(caller, scenario, called, due.elapsed(), late)
                .await;
        }
    }
}
