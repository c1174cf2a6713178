//! What a load run does: from `--flags`, or from `LOADGEN_*` variables (how the in-cluster
//! Deployment is configured). Every flag `--some-name` has the variable `LOADGEN_SOME_NAME`;
//! a flag wins over its variable.

use std::{collections::BTreeMap, time::Duration};

use meshmart::config::Env;

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

    /// Reads `LOADGEN_*` from `env`, then `args` (flags win).
    pub fn parse(env: &Env, args: &[String]) -> Result<Self, String> {
        let mut from_env = BTreeMap::new();
        for setting in SETTINGS {
            if let Some(value) = env.get(&env_name(setting.name)) {
                from_env.insert(setting.name, value.to_owned());
            }
        }
        let from_args = parse_flags(args)?;
        // Pacing given as a flag replaces pacing given in the environment, whichever kind.
        if from_args.contains_key("concurrency") || from_args.contains_key("rate") {
            from_env.remove("concurrency");
            from_env.remove("rate");
        }
        let mut raw = from_env;
        raw.extend(from_args);
        Self::from_settings(&raw)
    }

    fn from_settings(raw: &BTreeMap<&'static str, String>) -> Result<Self, String> {
        let get = |name: &str| raw.get(name).map(String::as_str);
        let targets = Target::ALL.map(|target| {
            get(&format!("target-{}", target.name()))
                .unwrap_or(target.default_url())
                .to_owned()
        });
        for (target, url) in Target::ALL.iter().zip(&targets) {
            let valid = url
                .parse::<tonic::codegen::http::Uri>()
                .ok()
                .is_some_and(|uri| uri.scheme_str() == Some("http") && uri.host().is_some());
            if !valid {
                return Err(format!(
                    "--target-{} must be an http://host:port address, not {url:?}",
                    target.name()
                ));
            }
        }

        let mix =
            Mix::parse(get("mix").unwrap_or(DEFAULT_MIX)).map_err(|e| format!("--mix: {e}"))?;
        let max_in_flight = number(get("max-in-flight"), "max-in-flight", 512, 1, 100_000)?;
        let load = match (get("concurrency"), get("rate")) {
            (Some(_), Some(_)) => {
                return Err(
                    "give --concurrency (closed loop) or --rate (open loop), not both".to_owned(),
                );
            }
            (Some(concurrency), None) => Load::Closed {
                concurrency: number(Some(concurrency), "concurrency", 1, 1, 10_000)?,
            },
            (None, rate) => {
                let rate = match rate {
                    None => DEFAULT_RATE,
                    Some(rate) => rate
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && (0.01..=1_000_000.0).contains(r))
                        .ok_or("--rate must be calls per second, from 0.01 to 1000000")?,
                };
                Load::Open {
                    rate,
                    max_in_flight,
                }
            }
        };
        let run_for = match get("duration") {
            None => None,
            Some(value) => Some(duration(value, "duration")?).filter(|d| !d.is_zero()),
        };
        let timeout = duration(get("timeout").unwrap_or("5s"), "timeout")?;
        if timeout.is_zero() {
            return Err("--timeout must be more than zero".to_owned());
        }
        let report_interval = duration(get("report-interval").unwrap_or("60s"), "report-interval")?;
        if report_interval < Duration::from_secs(1) {
            return Err("--report-interval must be at least 1s".to_owned());
        }
        let max_requests = match get("max-requests") {
            None => None,
            Some(value) => Some(number(Some(value), "max-requests", 1, 1, u64::MAX)?),
        };
        let threads = match get("threads") {
            None => None,
            Some(value) => Some(number(Some(value), "threads", 1, 1, 1024)?),
        };
        Ok(Self {
            targets,
            mix,
            load,
            duration: run_for,
            warmup: duration(get("warmup").unwrap_or("0s"), "warmup")?,
            max_requests,
            timeout,
            connections: number(get("connections"), "connections", 1, 1, 1024)?,
            wait_timeout: duration(get("wait-timeout").unwrap_or("120s"), "wait-timeout")?,
            report_interval,
            page_size: number(get("page-size"), "page-size", 20, 1, 100)?,
            echo_bytes: number(get("echo-bytes"), "echo-bytes", 64, 0, 1 << 20)?,
            seed: number(get("seed"), "seed", 1, 0, u64::MAX)?,
            threads,
            json: match get("json").map(str::to_ascii_lowercase).as_deref() {
                None | Some("false" | "0" | "no" | "off") => false,
                Some("true" | "1" | "yes" | "on") => true,
                Some(other) => return Err(format!("--json is on or off, not {other:?}")),
            },
        })
    }
}

/// Small enough that the in-cluster Deployment, left running, is background traffic
/// rather than a load test.
const DEFAULT_RATE: f64 = 10.0;
/// Mostly product pages, some listings: roughly how a shop front is browsed.
const DEFAULT_MIX: &str = "get-product=3,list-products=1";

struct Setting {
    name: &'static str,
    /// A flag that takes no value (`--json`).
    switch: bool,
    help: &'static str,
}

const fn setting(name: &'static str, help: &'static str) -> Setting {
    Setting {
        name,
        switch: false,
        help,
    }
}

const SETTINGS: &[Setting] = &[
    setting(
        "target-catalog",
        "catalog address (default http://127.0.0.1:50051)",
    ),
    setting(
        "target-echo",
        "echo baseline address (default http://127.0.0.1:50050)",
    ),
    setting(
        "mix",
        "scenarios and weights: get-product, list-products, echo (default get-product=3,list-products=1)",
    ),
    setting(
        "concurrency",
        "closed loop: this many callers, each waiting for its last reply",
    ),
    setting(
        "rate",
        "open loop: calls per second on a fixed schedule (default 10)",
    ),
    setting(
        "max-in-flight",
        "open loop: most calls outstanding at once (default 512)",
    ),
    setting(
        "duration",
        "how long to measure, e.g. 30s or 2m; 0 or unset runs until SIGTERM",
    ),
    setting("warmup", "load sent before measuring starts (default 0s)"),
    setting("max-requests", "stop after this many measured calls"),
    setting(
        "timeout",
        "abandon a call after this long, as DEADLINE_EXCEEDED (default 5s)",
    ),
    setting("connections", "HTTP/2 connections per service (default 1)"),
    setting(
        "wait-timeout",
        "how long to wait for SERVING before giving up (default 120s)",
    ),
    setting(
        "report-interval",
        "without a duration: report every so often (default 60s)",
    ),
    setting("page-size", "page size of list-products (default 20)"),
    setting("echo-bytes", "size of the echo message (default 64)"),
    setting("seed", "seed of the random choices (default 1)"),
    setting(
        "threads",
        "async runtime worker threads (default: the number of CPUs)",
    ),
    Setting {
        name: "json",
        switch: true,
        help: "print reports as JSON lines",
    },
];

/// `LOADGEN_TARGET_CATALOG` for `target-catalog`.
pub fn env_name(setting: &str) -> String {
    format!("LOADGEN_{}", setting.to_ascii_uppercase().replace('-', "_"))
}

/// The options part of the usage text.
pub fn help() -> String {
    let mut text = String::new();
    for setting in SETTINGS {
        let flag = if setting.switch {
            format!("--{}", setting.name)
        } else {
            format!("--{} V", setting.name)
        };
        text.push_str(&format!("  {flag:<22} {}\n", setting.help));
    }
    text
}

fn parse_flags(args: &[String]) -> Result<BTreeMap<&'static str, String>, String> {
    let mut raw = BTreeMap::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let setting = SETTINGS
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("unknown option --{name}"))?;
        let value = match (setting.switch, inline) {
            (_, Some(value)) => value,
            (true, None) => "true".to_owned(),
            (false, None) => args
                .next()
                .cloned()
                .ok_or_else(|| format!("--{name} needs a value"))?,
        };
        if raw.insert(setting.name, value).is_some() {
            return Err(format!("--{name} is given twice"));
        }
    }
    Ok(raw)
}

fn number<T>(value: Option<&str>, name: &str, default: T, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<T>()
        .ok()
        .filter(|n| *n >= min && *n <= max)
        .ok_or_else(|| {
            format!("--{name} must be a whole number from {min} to {max}, not {value:?}")
        })
}

/// Parses `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn duration(value: &str, name: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (amount, unit) = value.split_at(split);
    let amount: f64 = amount
        .parse()
        .ok()
        .filter(|a: &f64| a.is_finite() && *a >= 0.0)
        .ok_or_else(|| {
            format!("--{name} must be a duration like 500ms, 10s or 2m, not {value:?}")
        })?;
    let seconds = match unit {
        "ms" => amount / 1000.0,
        "" | "s" => amount,
        "m" => amount * 60.0,
        "h" => amount * 3600.0,
        _ => {
            return Err(format!(
                "--{name}: unknown unit {unit:?}; use ms, s, m or h"
            ));
        }
    };
    // A week is far beyond any run; the cap keeps Duration arithmetic from overflowing.
    if seconds > 7.0 * 24.0 * 3600.0 {
        return Err(format!("--{name} is too long: {value}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_are_a_gentle_open_loop_until_stopped() {
        let options = Options::parse(&Env::default(), &[]).unwrap();
        assert_eq!(
            options.load,
            Load::Open {
                rate: 10.0,
                max_in_flight: 512
            }
        );
        assert_eq!(options.duration, None);
        assert_eq!(options.target(Target::Catalog), "http://127.0.0.1:50051");
        assert_eq!(options.mix.to_string(), "get-product=3,list-products=1");
        assert!(!options.json);
    }

    #[test]
    fn flags_win_over_the_environment() {
        let env = Env::from_pairs([
            ("LOADGEN_TARGET_CATALOG", "http://catalog:50051"),
            ("LOADGEN_RATE", "5"),
            ("LOADGEN_DURATION", "0"),
            ("LOADGEN_JSON", "true"),
        ]);
        let options = Options::parse(&env, &[]).unwrap();
        assert_eq!(options.target(Target::Catalog), "http://catalog:50051");
        assert_eq!(
            options.load,
            Load::Open {
                rate: 5.0,
                max_in_flight: 512
            }
        );
        assert_eq!(options.duration, None);
        assert!(options.json);

        let options = Options::parse(
            &env,
            &args(&[
                "--concurrency",
                "16",
                "--duration=10s",
                "--warmup",
                "500ms",
                "--mix",
                "echo",
            ]),
        )
        .unwrap();
        assert_eq!(options.load, Load::Closed { concurrency: 16 });
        assert_eq!(options.duration, Some(Duration::from_secs(10)));
        assert_eq!(options.warmup, Duration::from_millis(500));
    }

    #[test]
    fn mistakes_are_named() {
        for (list, needle) in [
            (&["--concurrency", "4", "--rate", "10"][..], "not both"),
            (&["--rate", "0"][..], "--rate"),
            (&["--duration", "ten"][..], "--duration"),
            (&["--duration", "10d"][..], "unit"),
            (&["--target-echo", "echo:50050"][..], "--target-echo"),
            (&["--verbose"][..], "unknown option"),
            (&["--mix"][..], "needs a value"),
            (&["--mix", "place-order"][..], "pending"),
            (&["--threads", "1", "--threads", "2"][..], "twice"),
            (&["run"][..], "unexpected"),
        ] {
            let error = Options::parse(&Env::default(), &args(list)).unwrap_err();
            assert!(error.contains(needle), "{list:?}: {error}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("1.5s", "x").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("2m", "x").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("30", "x").unwrap(), Duration::from_secs(30));
        assert!(duration("-1s", "x").is_err());
        assert!(duration("", "x").is_err());
    }

    #[test]
    fn every_setting_has_a_variable_and_help() {
        assert_eq!(env_name("target-catalog"), "LOADGEN_TARGET_CATALOG");
        let help = help();
        for setting in SETTINGS {
            assert!(help.contains(&format!("--{}", setting.name)));
        }
    }
}
