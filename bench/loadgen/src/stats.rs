//! Latencies in HdrHistograms, errors by gRPC code, and the reports made of them.
//!
//! Every caller records into its own [`Stats`]; they are merged once the run ends, so
//! recording a call takes no lock and callers never wait on each other.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::{client::Outcome, flow::FlowReport, options::Load, scenario::Scenario};

/// Latencies are recorded in microseconds, from 1 µs to 60 s, to 3 significant digits:
/// 1 µs resolution below 2 ms, 0.1% above.
const HIGHEST_MICROS: u64 = 60_000_000;

/// One scenario's calls.
#[derive(Debug, Clone)]
pub struct ScenarioStats {
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
}

impl ScenarioStats {
    fn new(empty: &Histogram<u64>) -> Self {
        Self {
            latency: empty.clone(),
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: &Self) {
        // Every histogram is a clone of one empty one, so the bounds match and adding
        // cannot fail.
        let _ = self.latency.add(&other.latency);
        for (code, count) in &other.errors {
            *self.errors.entry(code).or_default() += count;
        }
    }
}

/// The calls of one caller, or of a whole run once merged.
#[derive(Debug, Clone)]
pub struct Stats {
    /// An empty histogram with the bounds every one of them has, cloned for each scenario.
    empty: Histogram<u64>,
    /// Indexed by [`Scenario::index`]; a histogram is made only for scenarios that ran.
    scenarios: Vec<Option<ScenarioStats>>,
    /// Open loop: calls sent more than 1 ms after they were due, because every allowed
    /// call was in flight or the load generator itself was short of CPU.
    late_sends: u64,
    /// The orders `place-order` placed, `orders/{id}`, to read back after the run.
    placed: Vec<String>,
}

impl Stats {
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            empty: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)?,
            scenarios: vec![None; Scenario::ALL.len()],
            late_sends: 0,
            placed: Vec::new(),
        })
    }

    pub fn record(&mut self, scenario: Scenario, outcome: Outcome, latency: Duration) {
        let Some(slot) = self.scenarios.get_mut(scenario.index()) else {
            return;
        };
        let stats = slot.get_or_insert_with(|| ScenarioStats::new(&self.empty));
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        stats.latency.saturating_record(micros);
        if let Outcome::Error(code) = outcome {
            *stats.errors.entry(code).or_default() += 1;
        }
    }

    pub fn late_send(&mut self) {
        self.late_sends += 1;
    }

    /// Remembers an order placed by a measured call.
    pub fn placed(&mut self, order: String) {
        self.placed.push(order);
    }

    /// The orders placed so far, leaving none here.
    pub fn take_placed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.placed)
    }

    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.scenarios.iter_mut().zip(&other.scenarios) {
            match (mine.as_mut(), theirs) {
                (_, None) => {}
                (Some(mine), Some(theirs)) => mine.merge(theirs),
                (None, Some(theirs)) => *mine = Some(theirs.clone()),
            }
        }
        self.late_sends += other.late_sends;
        self.placed.extend(other.placed.iter().cloned());
    }

    /// Calls recorded, errors included.
    pub fn requests(&self) -> u64 {
        self.scenarios
            .iter()
            .flatten()
            .map(|s| s.latency.len())
            .sum()
    }

    /// Summarises the calls made in `elapsed` under `load`.
    pub fn report(&self, load: Load, elapsed: Duration) -> Report {
        let mut total = ScenarioStats::new(&self.empty);
        let mut scenarios = Vec::new();
        for scenario in Scenario::ALL {
            if let Some(Some(stats)) = self.scenarios.get(scenario.index()) {
                total.merge(stats);
                scenarios.push(Summary::of(scenario.name(), stats, elapsed));
            }
        }
        Report {
            load,
            elapsed,
            late_sends: self.late_sends,
            total: Summary::of("total", &total, elapsed),
            scenarios,
            orders: None,
        }
    }
}

/// The figures of one scenario, or of all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub name: &'static str,
    pub requests: u64,
    pub ok: u64,
    /// Failed calls by gRPC code name (and [`crate::client::INVALID_REPLY`]).
    pub errors: BTreeMap<&'static str, u64>,
    /// Calls per second, errors included.
    pub throughput: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Summary {
    fn of(name: &'static str, stats: &ScenarioStats, elapsed: Duration) -> Self {
        let latency = &stats.latency;
        let requests = latency.len();
        let failed: u64 = stats.errors.values().sum();
        let seconds = elapsed.as_secs_f64();
        Self {
            name,
            requests,
            ok: requests.saturating_sub(failed),
            errors: stats.errors.clone(),
            throughput: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            mean_us: if requests > 0 { latency.mean() } else { 0.0 },
            p50_us: latency.value_at_quantile(0.50),
            p90_us: latency.value_at_quantile(0.90),
            p99_us: latency.value_at_quantile(0.99),
            p999_us: latency.value_at_quantile(0.999),
            max_us: latency.max(),
        }
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "throughput": round(self.throughput, 1),
            "latency_us": {
                "mean": round(self.mean_us, 1),
                "p50": self.p50_us,
                "p90": self.p90_us,
                "p99": self.p99_us,
                "p99.9": self.p999_us,
                "max": self.max_us,
            },
        })
    }
}

/// The result of a run, or of one reporting window of a run without end.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub load: Load,
    /// The measured time: from the end of the warm-up until the last call returned.
    pub elapsed: Duration,
    pub late_sends: u64,
    pub total: Summary,
    pub scenarios: Vec<Summary>,
    /// `place-order`: where the orders the run placed ended up, and how fast.
    pub orders: Option<FlowReport>,
}

impl Report {
    pub fn json(&self) -> Value {
        let load = match self.load {
            Load::Closed { concurrency } => json!({ "kind": "closed", "concurrency": concurrency }),
            Load::Open {
                rate,
                max_in_flight,
            } => {
                json!({ "kind": "open", "rate": rate, "max_in_flight": max_in_flight })
            }
        };
        let mut report = json!({
            "load": load,
            "elapsed_secs": round(self.elapsed.as_secs_f64(), 3),
            "late_sends": self.late_sends,
            "total": self.total.json(),
            "scenarios": self.scenarios.iter().map(Summary::json).collect::<Vec<_>>(),
        });
        if let (Some(orders), Some(fields)) = (&self.orders, report.as_object_mut()) {
            fields.insert("orders".to_owned(), orders.json());
        }
        report
    }

    /// A table for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let load = match self.load {
            Load::Closed { concurrency } => format!("closed loop, {concurrency} callers"),
            Load::Open {
                rate,
                max_in_flight,
            } => {
                format!("open loop, {rate} calls/s, at most {max_in_flight} in flight")
            }
        };
        let _ = writeln!(out, "{load}, measured {:.1?}", self.elapsed);
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "scenario",
            "requests",
            "errors",
            "calls/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        let rows = self.scenarios.iter().chain(std::iter::once(&self.total));
        for s in rows {
            let _ = writeln!(
                out,
                "{:<14} {:>9} {:>8} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                s.name,
                s.requests,
                s.failed(),
                s.throughput,
                ms(s.p50_us),
                ms(s.p90_us),
                ms(s.p99_us),
                ms(s.p999_us),
                ms(s.max_us)
            );
        }
        if !self.total.errors.is_empty() {
            let errors: Vec<String> = self
                .total
                .errors
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            let _ = writeln!(out, "errors by code: {}", errors.join(", "));
        }
        if self.late_sends > 0 {
            let _ = writeln!(
                out,
                "late sends: {} calls went out more than 1 ms after they were due (their latency counts from when they were due)",
                self.late_sends
            );
        }
        if let Some(orders) = &self.orders {
            out.push_str(&orders.text());
        }
        out
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_report_quantiles_and_errors() {
        let mut a = Stats::new().unwrap();
        let mut b = Stats::new().unwrap();
        for i in 1..=100u64 {
            a.record(
                Scenario::GetProduct,
                Outcome::Ok,
                Duration::from_micros(i * 10),
            );
        }
        b.record(Scenario::Echo, Outcome::Ok, Duration::from_micros(50));
        b.record(
            Scenario::GetProduct,
            Outcome::Error("UNAVAILABLE"),
            Duration::from_millis(5),
        );
        b.late_send();
        a.merge(&b);
        assert_eq!(a.requests(), 102);

        let report = a.report(Load::Closed { concurrency: 2 }, Duration::from_secs(2));
        assert_eq!(report.total.requests, 102);
        assert_eq!(report.total.ok, 101);
        assert_eq!(report.total.errors.get("UNAVAILABLE"), Some(&1));
        assert_eq!(report.late_sends, 1);
        assert!((report.total.throughput - 51.0).abs() < 1e-9);
        let names: Vec<&str> = report.scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, ["get-product", "echo"]);
        let get = &report.scenarios[0];
        // 101 calls: 10, 20, ... 1000 µs and one 5 ms error; the 51st is 510 µs.
        assert_eq!(get.p50_us, 510);
        // Three significant digits: the top of the bucket holding 5000 µs.
        assert!((5000..=5005).contains(&get.max_us), "{}", get.max_us);

        let json = report.json();
        assert_eq!(json["total"]["requests"], 102);
        assert_eq!(json["load"]["concurrency"], 2);
        assert_eq!(json["scenarios"][0]["latency_us"]["p50"], 510);
        assert!(report.text().contains("UNAVAILABLE=1"));
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let report = Stats::new().unwrap().report(
            Load::Open {
                rate: 1.0,
                max_in_flight: 1,
            },
            Duration::ZERO,
        );
        assert_eq!(report.total.requests, 0);
        assert_eq!(report.total.throughput, 0.0);
        assert!(report.scenarios.is_empty());
    }
}
