//! After a `place-order` run: how long the order flow took, read from each order's history.
//!
//! CreateOrder answers once the order is stored PENDING; payment, shipment and the saga
//! follow through events, long after the call returned. So the load generator keeps the
//! names of the orders it placed, waits (for at most `--settle-timeout`) until each is
//! COMPLETED or FAILED, and reads its history with GetOrder. Each history entry carries the
//! time the service that caused it recorded, so the end-to-end latency is the COMPLETED
//! entry's time minus the PENDING entry's: server-side, free of how often this side polls.
//! The stored times have millisecond resolution.

use std::{fmt::Write as _, time::Duration};

use meshmart::proto::orders::{
    GetOrderRequest, Order, State, Transition, order_service_client::OrderServiceClient,
};
use serde_json::{Value, json};
use tokio::{task::JoinSet, time::Instant};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

/// The customer every order of a run is placed for, and read back as: GetOrder answers
/// only the customer's own orders.
pub const CUSTOMER: &str = "loadgen";

/// The hops of the flow, each from one state of the history to the next: which service's
/// work (and which event's delivery) each one measures is in docs/benchmarks.md.
pub const HOPS: [(State, State); 3] = [
    (State::Pending, State::Paid),
    (State::Paid, State::Shipped),
    (State::Shipped, State::Completed),
];

/// GetOrder calls in flight at once while settling: enough that thousands of orders are
/// read back in a second or two, few enough not to become a load test of their own.
const PARALLEL_READS: usize = 16;

/// The pause between two rounds of reads of the orders not yet final. Orders finish in
/// tens of milliseconds when the flow keeps up; this only bounds the reads of the rest.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// `message` as a call from [`CUSTOMER`], as the gateway would forward it.
pub fn as_customer<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        meshmart::customer::CUSTOMER_HEADER,
        MetadataValue::from_static(CUSTOMER),
    );
    request
}

/// Where one order ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// COMPLETED: from PENDING to COMPLETED took `total`; each of [`HOPS`] took its entry
    /// of `hops` (`None` where the history lacks one of its two states).
    Completed {
        /// When it was created (the PENDING entry), as nanoseconds since the epoch.
        created_ns: i128,
        /// When it completed, as nanoseconds since the epoch.
        completed_ns: i128,
        total: Duration,
        hops: [Option<Duration>; HOPS.len()],
    },
    Failed,
    /// Not final yet, or a history without a PENDING entry to count from.
    Unfinished,
}

/// Nanoseconds since the epoch of `state`'s first entry in `history`.
fn time_of(history: &[Transition], state: State) -> Option<i128> {
    history
        .iter()
        .find(|t| t.state() == state)
        .and_then(|t| t.time.as_ref())
        .map(|time| i128::from(time.seconds) * 1_000_000_000 + i128::from(time.nanos))
}

/// From `from` to `to`, in nanoseconds; zero if the clocks of two services put `to` first.
fn between(from: i128, to: i128) -> Duration {
    Duration::from_nanos(u64::try_from((to - from).max(0)).unwrap_or(u64::MAX))
}

/// Where `order` stands, and how long its flow took if it completed.
pub fn fate(order: &Order) -> Fate {
    match order.state() {
        State::Completed => {}
        State::Failed => return Fate::Failed,
        _ => return Fate::Unfinished,
    }
    let (Some(created_ns), Some(completed_ns)) = (
        time_of(&order.history, State::Pending),
        time_of(&order.history, State::Completed),
    ) else {
        return Fate::Unfinished;
    };
    let hops = HOPS.map(|(from, to)| {
        Some(between(
            time_of(&order.history, from)?,
            time_of(&order.history, to)?,
        ))
    });
    Fate::Completed {
        created_ns,
        completed_ns,
        total: between(created_ns, completed_ns),
        hops,
    }
}

/// The value at quantile `q` (0 to 1) of `sorted`, by nearest rank: the smallest value
/// with at least `q` of them at or below it. Zero for no values.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

/// What the placed orders of a run came to.
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    placed: u64,
    totals: Vec<Duration>,
    hops: [Vec<Duration>; HOPS.len()],
    failed: u64,
    unfinished: u64,
    first_created_ns: Option<i128>,
    last_completed_ns: Option<i128>,
}

impl FlowStats {
    /// Counts one placed order: `order` as last read, `None` if it could not be read.
    pub fn record(&mut self, order: Option<&Order>) {
        self.placed += 1;
        match order.map_or(Fate::Unfinished, fate) {
            Fate::Completed {
                created_ns,
                completed_ns,
                total,
                hops,
            } => {
                self.totals.push(total);
                for (all, hop) in self.hops.iter_mut().zip(hops) {
                    all.extend(hop);
                }
                self.first_created_ns = Some(
                    self.first_created_ns
                        .map_or(created_ns, |first| first.min(created_ns)),
                );
                self.last_completed_ns = Some(
                    self.last_completed_ns
                        .map_or(completed_ns, |last| last.max(completed_ns)),
                );
            }
            Fate::Failed => self.failed += 1,
            Fate::Unfinished => self.unfinished += 1,
        }
    }

    pub fn merge(&mut self, other: &Self) {
        self.placed += other.placed;
        self.totals.extend(&other.totals);
        for (mine, theirs) in self.hops.iter_mut().zip(&other.hops) {
            mine.extend(theirs);
        }
        self.failed += other.failed;
        self.unfinished += other.unfinished;
        self.first_created_ns = match (self.first_created_ns, other.first_created_ns) {
            (Some(mine), Some(theirs)) => Some(mine.min(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
        // `None` is below every `Some`, so the larger is the later completion, if any.
        self.last_completed_ns = self.last_completed_ns.max(other.last_completed_ns);
    }

    /// Summarises the orders of a run that measured `elapsed`, settled for at most
    /// `settle_timeout`.
    ///
    /// Completed orders per second are counted over the first order's creation to the last
    /// one's completion (server-side times), and over no less than the run: when the flow
    /// falls behind the load, its backlog drains after the load stops, and that time counts.
    pub fn report(&self, elapsed: Duration, settle_timeout: Duration) -> FlowReport {
        let span = match (self.first_created_ns, self.last_completed_ns) {
            (Some(first), Some(last)) => between(first, last),
            _ => Duration::ZERO,
        };
        let seconds = span.max(elapsed).as_secs_f64();
        let completed = self.totals.len() as u64;
        FlowReport {
            placed: self.placed,
            completed,
            failed: self.failed,
            unfinished: self.unfinished,
            settle_timeout,
            throughput: if seconds > 0.0 {
                completed as f64 / seconds
            } else {
                0.0
            },
            end_to_end: Quantiles::of(&self.totals),
            hops: self.hops.iter().map(|hop| Quantiles::of(hop)).collect(),
        }
    }
}

/// Quantiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Quantiles {
    fn of(values: &[Duration]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self {
            count: sorted.len() as u64,
            p50_us: us(quantile(&sorted, 0.50)),
            p90_us: us(quantile(&sorted, 0.90)),
            p99_us: us(quantile(&sorted, 0.99)),
            max_us: us(sorted.last().copied().unwrap_or_default()),
        }
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": self.p50_us,
            "p90": self.p90_us,
            "p99": self.p99_us,
            "max": self.max_us,
        })
    }
}

/// The order flow of a `place-order` run.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowReport {
    /// Orders CreateOrder placed in the measured run.
    pub placed: u64,
    pub completed: u64,
    pub failed: u64,
    /// Not final within `settle_timeout` after the load ended.
    pub unfinished: u64,
    pub settle_timeout: Duration,
    /// Completed orders per second ([`FlowStats::report`]).
    pub throughput: f64,
    /// PENDING to COMPLETED, of the completed orders.
    pub end_to_end: Quantiles,
    /// Each of [`HOPS`], of the completed orders.
    pub hops: Vec<Quantiles>,
}

fn hop_name((from, to): (State, State)) -> String {
    let name = |s: State| s.as_str_name().trim_start_matches("STATE_").to_owned();
    format!("{}->{}", name(from), name(to))
}

impl FlowReport {
    pub fn json(&self) -> Value {
        let hops: serde_json::Map<String, Value> = HOPS
            .iter()
            .zip(&self.hops)
            .map(|(hop, q)| (hop_name(*hop), q.json()))
            .collect();
        json!({
            "placed": self.placed,
            "completed": self.completed,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "settle_timeout_secs": self.settle_timeout.as_secs_f64(),
            "completed_per_sec": (self.throughput * 10.0).round() / 10.0,
            "end_to_end_us": self.end_to_end.json(),
            "hops_us": hops,
        })
    }

    /// Lines for people, below the calls' table.
    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "orders placed {}: {} completed, {} failed, {} not final within {:?}; {:.1} completed/s",
            self.placed,
            self.completed,
            self.failed,
            self.unfinished,
            self.settle_timeout,
            self.throughput
        );
        let q = &self.end_to_end;
        let _ = writeln!(
            out,
            "created to COMPLETED (server-side): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            ms(q.p50_us),
            ms(q.p90_us),
            ms(q.p99_us),
            ms(q.max_us)
        );
        for (hop, q) in HOPS.iter().zip(&self.hops) {
            let _ = writeln!(
                out,
                "  {:<18} p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                hop_name(*hop),
                ms(q.p50_us),
                ms(q.p99_us),
                ms(q.max_us)
            );
        }
        out
    }
}

/// Reads `names` back until each is final or `settle_timeout` has passed, and counts them.
/// Orders that could not be read by then count as not finished.
pub async fn settle(
    clients: &[OrderServiceClient<Channel>],
    names: Vec<String>,
    settle_timeout: Duration,
    call_timeout: Duration,
) -> FlowStats {
    let deadline = Instant::now() + settle_timeout;
    let mut stats = FlowStats::default();
    let mut waiting = names;
    let mut round = 0u64;
    while !waiting.is_empty() && !clients.is_empty() {
        let mut reads = JoinSet::new();
        let mut left = Vec::new();
        for (i, name) in waiting.into_iter().enumerate() {
            if Instant::now() >= deadline {
                left.push(name);
                continue;
            }
            while reads.len() >= PARALLEL_READS {
                if let Some(joined) = reads.join_next().await {
                    keep(&mut stats, &mut left, joined);
                }
            }
            let mut client = clients[i % clients.len()].clone();
            let until = deadline.min(Instant::now() + call_timeout);
            reads.spawn(async move {
                let request = as_customer(GetOrderRequest { name: name.clone() });
                let order = tokio::time::timeout_at(until, client.get_order(request)).await;
                let order = match order {
                    Ok(Ok(reply)) => reply.into_inner().order,
                    Ok(Err(status)) => {
                        tracing::debug!(%name, code = ?status.code(), "cannot read the order yet");
                        None
                    }
                    Err(_) => None,
                };
                (name, order)
            });
        }
        while let Some(joined) = reads.join_next().await {
            keep(&mut stats, &mut left, joined);
        }
        waiting = left;
        round += 1;
        let now = Instant::now();
        if waiting.is_empty() || now >= deadline {
            break;
        }
        tracing::debug!(round, waiting = waiting.len(), "orders not final yet");
        tokio::time::sleep(ROUND_PAUSE.min(deadline - now)).await;
    }
    for _ in &waiting {
        stats.record(None);
    }
    stats
}

/// Counts the order read if it is final; otherwise keeps its name for the next round. A
/// read whose task failed has lost its name: the order counts as not finished.
fn keep(
    stats: &mut FlowStats,
    left: &mut Vec<String>,
    joined: Result<(String, Option<Order>), tokio::task::JoinError>,
) {
    match joined {
        Ok((_, Some(order))) if matches!(order.state(), State::Completed | State::Failed) => {
            stats.record(Some(&order));
        }
        Ok((name, _)) => left.push(name),
        Err(_) => stats.record(None),
    }
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    /// An order in `state` with a history of `(state, milliseconds)`.
    fn order(state: State, history: &[(State, i64)]) -> Order {
        Order {
            state: state as i32,
            history: history
                .iter()
                .map(|(state, ms)| Transition {
                    state: *state as i32,
                    time: Some(Timestamp {
                        seconds: 1_700_000_000 + ms / 1000,
                        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap(),
                    }),
                    reason: String::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn completed(pending: i64, paid: i64, shipped: i64, done: i64) -> Order {
        order(
            State::Completed,
            &[
                (State::Pending, pending),
                (State::Paid, paid),
                (State::Shipped, shipped),
                (State::Completed, done),
            ],
        )
    }

    #[test]
    fn a_completed_history_gives_its_total_and_hops() {
        let Fate::Completed { total, hops, .. } = fate(&completed(900, 912, 1_930, 1_944)) else {
            panic!("not completed");
        };
        assert_eq!(total, Duration::from_millis(1_044));
        assert_eq!(
            hops,
            [
                Some(Duration::from_millis(12)),
                Some(Duration::from_millis(1_018)),
                Some(Duration::from_millis(14)),
            ]
        );
        let failed = order(State::Failed, &[(State::Pending, 0), (State::Failed, 5)]);
        assert_eq!(fate(&failed), Fate::Failed);
        let paid = order(State::Paid, &[(State::Pending, 0), (State::Paid, 5)]);
        assert_eq!(fate(&paid), Fate::Unfinished);
        // COMPLETED with no PENDING entry to count from is not counted as a latency.
        let headless = order(State::Completed, &[(State::Completed, 5)]);
        assert_eq!(fate(&headless), Fate::Unfinished);
        // Another service's clock behind ours: a hop is zero, never negative.
        let Fate::Completed { hops, .. } = fate(&completed(10, 8, 20, 30)) else {
            panic!("not completed");
        };
        assert_eq!(hops[0], Some(Duration::ZERO));
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.50), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&sorted, 0.0), Duration::from_millis(1));
        let three = [1, 2, 3].map(Duration::from_millis);
        assert_eq!(quantile(&three, 0.5), Duration::from_millis(2));
        assert_eq!(quantile(&three, 0.99), Duration::from_millis(3));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn a_run_of_histories_reports_latencies_counts_and_rate() {
        let mut a = FlowStats::default();
        let mut b = FlowStats::default();
        // 10 orders, one placed every 100 ms, each taking 20, 40, ... 200 ms.
        for i in 0..10 {
            let start = i * 100;
            let took = (i + 1) * 20;
            let order = completed(start, start + 5, start + took - 5, start + took);
            if i % 2 == 0 { &mut a } else { &mut b }.record(Some(&order));
        }
        b.record(Some(&order(
            State::Failed,
            &[(State::Pending, 0), (State::Failed, 3)],
        )));
        b.record(Some(&order(State::Shipped, &[(State::Pending, 0)])));
        b.record(None);
        a.merge(&b);

        let report = a.report(Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(report.placed, 13);
        assert_eq!(report.completed, 10);
        assert_eq!(report.failed, 1);
        assert_eq!(report.unfinished, 2);
        assert_eq!(report.end_to_end.count, 10);
        assert_eq!(report.end_to_end.p50_us, 100_000);
        assert_eq!(report.end_to_end.p99_us, 200_000);
        assert_eq!(report.end_to_end.max_us, 200_000);
        assert_eq!(report.hops[0].p50_us, 5_000);
        assert_eq!(report.hops[2].max_us, 5_000);
        // From the first creation (0 ms) to the last completion (900 + 200 ms): 1.1 s, more
        // than the 0.5 s the load ran, so the backlog counts.
        assert!(
            (report.throughput - 10.0 / 1.1).abs() < 1e-9,
            "{}",
            report.throughput
        );
        // Over no less than the run.
        let longer = a.report(Duration::from_secs(2), Duration::from_secs(30));
        assert!((longer.throughput - 5.0).abs() < 1e-9);

        let json = report.json();
        assert_eq!(json["completed"], 10);
        assert_eq!(json["end_to_end_us"]["p50"], 100_000);
        assert_eq!(json["hops_us"]["PENDING->PAID"]["p50"], 5_000);
        let text = report.text();
        assert!(text.contains("1 failed, 2 not final"), "{text}");
        assert!(text.contains("SHIPPED->COMPLETED"), "{text}");
    }

    #[test]
    fn no_orders_report_zeros() {
        let report = FlowStats::default().report(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(report.placed, 0);
        assert_eq!(report.throughput, 0.0);
        assert_eq!(report.end_to_end, Quantiles::default());
    }
}
