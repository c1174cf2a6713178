//! What a load run does: from `--flags`, or from `LOADGEN_*` variables (how the in-cluster
//! Deployment is configured). Every flag `--some-name` has the variable `LOADGEN_SOME_NAME`;
//! a flag wins over its variable. `loadgen --help` lists them all with their defaults.

use std::{ffi::OsString, fmt::Display, str::FromStr, time::Duration};

use clap::{
    ArgMatches, Args, FromArgMatches,
    builder::BoolishValueParser,
    error::{ErrorKind, Result},
    parser::ValueSource,
};

use crate::scenario::{Mix, Target};

/// How calls are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `concurrency` callers, each sending its next call as soon as its last one returns.
    /// Shows the most the service can do; hides queueing, since callers wait for it.
    Closed { concurrency: usize },
    /// `rate` calls per second on a fixed schedule, whatever the replies do, with at most
    /// `max_in_flight` outstanding. Latency counts from the time a call was due, not from
    /// when it was sent, so a stall is charged to every call it delayed.
    Open { rate: f64, max_in_flight: usize },
}

impl Load {
    /// `closed` or `open`, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
        }
    }
}

/// Mostly product pages, some listings: roughly how a shop front is browsed.
const DEFAULT_MIX: &str = "get-product=3,list-products=1";

/// The flags of `loadgen run` and `loadgen wait`, as given; [`Options`] is what they mean.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Catalog address
    #[arg(long, value_name = "URL", env = "LOADGEN_TARGET_CATALOG",
          default_value = Target::Catalog.default_url(), value_parser = http_url)]
    target_catalog: String,
    /// Echo baseline address
    #[arg(long, value_name = "URL", env = "LOADGEN_TARGET_ECHO",
          default_value = Target::Echo.default_url(), value_parser = http_url)]
    target_echo: String,
    /// Orders address (place-order)
    #[arg(long, value_name = "URL", env = "LOADGEN_TARGET_ORDERS",
          default_value = Target::Orders.default_url(), value_parser = http_url)]
    target_orders: String,
    /// Inventory address (place-order restocks the demo products there first)
    #[arg(long, value_name = "URL", env = "LOADGEN_TARGET_INVENTORY",
          default_value = Target::Inventory.default_url(), value_parser = http_url)]
    target_inventory: String,
    /// Scenarios and weights: get-product, list-products, echo, place-order
    #[arg(long, env = "LOADGEN_MIX", default_value = DEFAULT_MIX, value_parser = Mix::parse)]
    mix: Mix,
    /// Closed loop: this many callers, each waiting for its last reply
    #[arg(long, value_name = "N", env = "LOADGEN_CONCURRENCY", value_parser = in_range(1_usize, 10_000))]
    concurrency: Option<usize>,
    /// Open loop: calls per second on a fixed schedule
    // The default is small enough that the in-cluster Deployment, left running, is
    // background traffic rather than a load test.
    #[arg(long, value_name = "CALLS_PER_SEC", env = "LOADGEN_RATE", default_value = "10",
          value_parser = rate)]
    rate: f64,
    /// Open loop: most calls outstanding at once
    #[arg(long, value_name = "N", env = "LOADGEN_MAX_IN_FLIGHT", default_value = "512",
          value_parser = in_range(1_usize, 100_000))]
    max_in_flight: usize,
    /// How long to measure, e.g. 30s or 2m; 0 or unset runs until SIGTERM
    #[arg(long, value_name = "DURATION", env = "LOADGEN_DURATION", value_parser = duration)]
    duration: Option<Duration>,
    /// Load sent before measuring starts
    #[arg(long, value_name = "DURATION", env = "LOADGEN_WARMUP", default_value = "0s",
          value_parser = duration)]
    warmup: Duration,
    /// Stop after this many measured calls
    #[arg(long, value_name = "N", env = "LOADGEN_MAX_REQUESTS", value_parser = in_range(1_u64, u64::MAX))]
    max_requests: Option<u64>,
    /// Abandon a call after this long, as DEADLINE_EXCEEDED
    #[arg(long, value_name = "DURATION", env = "LOADGEN_TIMEOUT", default_value = "5s",
          value_parser = positive_duration)]
    timeout: Duration,
    /// HTTP/2 connections per service
    #[arg(long, value_name = "N", env = "LOADGEN_CONNECTIONS", default_value = "1",
          value_parser = in_range(1_usize, 1024))]
    connections: usize,
    /// How long to wait for SERVING before giving up
    #[arg(long, value_name = "DURATION", env = "LOADGEN_WAIT_TIMEOUT", default_value = "120s",
          value_parser = duration)]
    wait_timeout: Duration,
    /// place-order: after the load, how long the placed orders may take to reach COMPLETED
    /// or FAILED
    #[arg(long, value_name = "DURATION", env = "LOADGEN_SETTLE_TIMEOUT", default_value = "60s",
          value_parser = duration)]
    settle_timeout: Duration,
    /// Without a duration: report every so often
    #[arg(long, value_name = "DURATION", env = "LOADGEN_REPORT_INTERVAL", default_value = "60s",
          value_parser = report_interval)]
    report_interval: Duration,
    /// Page size of list-products
    #[arg(long, value_name = "N", env = "LOADGEN_PAGE_SIZE", default_value = "20",
          value_parser = in_range(1_i32, 100))]
    page_size: i32,
    /// Size of the echo message in bytes
    #[arg(long, value_name = "BYTES", env = "LOADGEN_ECHO_BYTES", default_value = "64",
          value_parser = in_range(0_usize, 1 << 20))]
    echo_bytes: usize,
    /// Seed of the random choices
    #[arg(long, value_name = "N", env = "LOADGEN_SEED", default_value = "1",
          value_parser = in_range(0_u64, u64::MAX))]
    seed: u64,
    /// Async runtime worker threads [default: the number of CPUs]
    #[arg(long, value_name = "N", env = "LOADGEN_THREADS", value_parser = in_range(1_usize, 1024))]
    threads: Option<usize>,
    /// Print reports as JSON lines (the variable: true or false)
    #[arg(long, env = "LOADGEN_JSON", action = clap::ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    json: bool,
}

/// Everything a run is configured with.
#[derive(Debug, Clone)]
pub struct Options {
    /// `http://host:port` of each service, indexed by [`Target::index`].
    pub targets: [String; Target::ALL.len()],
    pub mix: Mix,
    pub load: Load,
    /// How long to measure; `None` runs until SIGTERM, reporting every `report_interval`.
    pub duration: Option<Duration>,
    /// Load sent before measuring starts, to open connections and warm caches.
    pub warmup: Duration,
    /// Stop after this many measured calls (a smoke run), even before `duration`.
    pub max_requests: Option<u64>,
    /// A call that takes longer is abandoned and counted as DEADLINE_EXCEEDED.
    pub timeout: Duration,
    /// HTTP/2 connections per service, shared round-robin by the callers.
    pub connections: usize,
    /// How long to wait for every service to report SERVING before giving up.
    pub wait_timeout: Duration,
    /// `place-order`: once the load has ended, how long the orders it placed may take to
    /// reach a final state before the rest are reported as not finished.
    pub settle_timeout: Duration,
    /// In a run without a duration, how often to report (and reset) the statistics.
    pub report_interval: Duration,
    /// `page_size` of `list-products`.
    pub page_size: i32,
    /// Size in bytes of the `echo` message; about the size of a product, so that both
    /// baselines move similar bytes.
    pub echo_bytes: usize,
    /// Seeds every caller's random choices, so a run can be repeated.
    pub seed: u64,
    /// Worker threads of the async runtime; the number of CPUs when unset.
    pub threads: Option<usize>,
    /// Print reports as JSON lines instead of text.
    pub json: bool,
}

impl Options {
    pub fn target(&self, target: Target) -> &str {
        &self.targets[target.index()]
    }

    /// Parses flags alone (no program name), and `LOADGEN_*` from the process environment.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command =
            LoadArgs::augment_args(clap::Command::new("loadgen").no_binary_name(true));
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_matches(&matches).map_err(|error| error.format(&mut command))
    }

    /// What the flags and variables parsed into `matches` mean.
    pub fn from_matches(matches: &ArgMatches) -> Result<Self> {
        let args = LoadArgs::from_arg_matches(matches)?;
        let explicit = |id: &str| match matches.value_source(id) {
            Some(ValueSource::DefaultValue) | None => None,
            Some(source) => Some(source),
        };
        // Pacing given as a flag replaces pacing given in the environment, whichever kind.
        let load = match (args.concurrency, explicit("concurrency"), explicit("rate")) {
            (Some(_), Some(c), Some(r)) if c == r => {
                let (concurrency, rate) = if c == ValueSource::CommandLine {
                    ("--concurrency", "--rate")
                } else {
                    ("LOADGEN_CONCURRENCY", "LOADGEN_RATE")
                };
                return Err(clap::Error::raw(
                    ErrorKind::ArgumentConflict,
                    format!("give {concurrency} (closed loop) or {rate} (open loop), not both"),
                ));
            }
            (Some(concurrency), _, r) if r != Some(ValueSource::CommandLine) => {
                Load::Closed { concurrency }
            }
            _ => Load::Open {
                rate: args.rate,
                max_in_flight: args.max_in_flight,
            },
        };
        let targets = Target::ALL.map(|target| match target {
            // A new target needs its flag above: this match does not compile without it.
            Target::Catalog => args.target_catalog.clone(),
            Target::Echo => args.target_echo.clone(),
            Target::Orders => args.target_orders.clone(),
            Target::Inventory => args.target_inventory.clone(),
        });
        Ok(Self {
            targets,
            mix: args.mix,
            load,
            duration: args.duration.filter(|d| !d.is_zero()),
            warmup: args.warmup,
            max_requests: args.max_requests,
            timeout: args.timeout,
            connections: args.connections,
            wait_timeout: args.wait_timeout,
            settle_timeout: args.settle_timeout,
            report_interval: args.report_interval,
            page_size: args.page_size,
            echo_bytes: args.echo_bytes,
            seed: args.seed,
            threads: args.threads,
            json: args.json,
        })
    }
}

/// A value parser for a whole number from `min` to `max`.
fn in_range<T>(min: T, max: T) -> impl Fn(&str) -> std::result::Result<T, String> + Clone
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |value| {
        value
            .trim()
            .parse::<T>()
            .ok()
            .filter(|n| *n >= min && *n <= max)
            .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
    }
}

fn rate(value: &str) -> std::result::Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.01..=1_000_000.0).contains(r))
        .ok_or_else(|| "must be calls per second, from 0.01 to 1000000".to_owned())
}

fn http_url(value: &str) -> std::result::Result<String, String> {
    let valid = value
        .parse::<tonic::codegen::http::Uri>()
        .ok()
        .is_some_and(|uri| uri.scheme_str() == Some("http") && uri.host().is_some());
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be an http://host:port address".to_owned())
    }
}

fn positive_duration(value: &str) -> std::result::Result<Duration, String> {
    Some(duration(value)?)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be more than zero".to_owned())
}

fn report_interval(value: &str) -> std::result::Result<Duration, String> {
    Some(duration(value)?)
        .filter(|d| *d >= Duration::from_secs(1))
        .ok_or_else(|| "must be at least 1s".to_owned())
}

/// Parses `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn duration(value: &str) -> std::result::Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (amount, unit) = value.split_at(split);
    let amount: f64 = amount
        .parse()
        .ok()
        .filter(|a: &f64| a.is_finite() && *a >= 0.0)
        .ok_or("must be a duration like 500ms, 10s or 2m")?;
    let seconds = match unit {
        "ms" => amount / 1000.0,
        "" | "s" => amount,
        "m" => amount * 60.0,
        "h" => amount * 3600.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s, m or h")),
    };
    // A week is far beyond any run; the cap keeps Duration arithmetic from overflowing.
    if seconds > 7.0 * 24.0 * 3600.0 {
        return Err("is too long: a week at most".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    // What the LOADGEN_* variables do, and that flags win over them, is tested on the
    // binary (tests/cli.rs): clap reads them from the process environment.
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::try_parse_from(args)
    }

    #[test]
    fn defaults_are_a_gentle_open_loop_until_stopped() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            options.load,
            Load::Open {
                rate: 10.0,
                max_in_flight: 512
            }
        );
        assert_eq!(options.duration, None);
        assert_eq!(options.target(Target::Catalog), "http://127.0.0.1:50051");
        assert_eq!(options.target(Target::Echo), "http://127.0.0.1:50050");
        assert_eq!(options.target(Target::Orders), "http://127.0.0.1:50053");
        assert_eq!(options.target(Target::Inventory), "http://127.0.0.1:50052");
        assert_eq!(options.settle_timeout, Duration::from_secs(60));
        assert_eq!(options.mix.to_string(), "get-product=3,list-products=1");
        assert_eq!(options.timeout, Duration::from_secs(5));
        assert_eq!(options.wait_timeout, Duration::from_secs(120));
        assert!(!options.json);
    }

    #[test]
    fn flags() {
        let options = parse(&[
            "--concurrency",
            "16",
            "--duration=10s",
            "--warmup",
            "500ms",
            "--mix",
            "echo",
            "--json",
            "--target-catalog",
            "http://catalog:50051",
        ])
        .unwrap();
        assert_eq!(options.load, Load::Closed { concurrency: 16 });
        assert_eq!(options.duration, Some(Duration::from_secs(10)));
        assert_eq!(options.warmup, Duration::from_millis(500));
        assert_eq!(options.mix.to_string(), "echo=1");
        assert_eq!(options.target(Target::Catalog), "http://catalog:50051");
        assert!(options.json);
        let orders = parse(&[
            "--mix",
            "place-order",
            "--target-orders",
            "http://orders:50053",
            "--target-inventory",
            "http://inventory:50052",
            "--settle-timeout",
            "15s",
        ])
        .unwrap();
        assert_eq!(orders.mix.to_string(), "place-order=1");
        assert_eq!(orders.target(Target::Orders), "http://orders:50053");
        assert_eq!(orders.target(Target::Inventory), "http://inventory:50052");
        assert_eq!(orders.settle_timeout, Duration::from_secs(15));
        // Zero is no duration: run until stopped.
        assert_eq!(parse(&["--duration", "0"]).unwrap().duration, None);
        let open = parse(&["--rate", "2000", "--max-in-flight", "64"]).unwrap();
        assert_eq!(
            open.load,
            Load::Open {
                rate: 2000.0,
                max_in_flight: 64
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (list, needle) in [
            (&["--concurrency", "4", "--rate", "10"][..], "not both"),
            (&["--rate", "0"][..], "--rate"),
            (&["--duration", "ten"][..], "--duration"),
            (&["--duration", "10d"][..], "unit"),
            (&["--timeout", "0s"][..], "--timeout"),
            (&["--report-interval", "500ms"][..], "at least 1s"),
            (&["--target-echo", "echo:50050"][..], "--target-echo"),
            (&["--verbose"][..], "--verbose"),
            (&["--mix"][..], "--mix"),
            (&["--mix", "place-order=x"][..], "weight"),
            (&["--target-orders", "orders:50053"][..], "--target-orders"),
            (&["--settle-timeout", "soon"][..], "--settle-timeout"),
            (&["--threads", "1", "--threads", "2"][..], "--threads"),
            (&["--page-size", "101"][..], "from 1 to 100"),
            (&["run"][..], "unexpected argument 'run'"),
        ] {
            let error = parse(list).unwrap_err().to_string();
            assert!(error.contains(needle), "{list:?}: {error}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("30").unwrap(), Duration::from_secs(30));
        assert!(duration("-1s").is_err());
        assert!(duration("").is_err());
        assert!(duration("8d").is_err());
    }
}
