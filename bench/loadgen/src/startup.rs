//! `loadgen startup`: how long a service takes from process start to SERVING.
//!
//! The clock starts just before the process is spawned and stops when a health check says
//! SERVING. Until the port is bound, a connection is refused at once and retried 1 ms
//! later; once it is bound, the check waits in the listen backlog and is answered the
//! moment the server runs. So the figure is late by at most about 1 ms plus one loopback
//! round trip, and never early.

use std::{path::PathBuf, process::Stdio, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::{Value, json};
use tokio::{process::Command, time::Instant};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{Error, client};

/// What to start and how to know it is up.
#[derive(Debug, Clone)]
pub struct StartupOptions {
    /// The program and its arguments; it is configured by the environment it inherits.
    pub program: Vec<String>,
    /// Where it serves, `http://127.0.0.1:port`.
    pub target: String,
    /// The gRPC service whose health is checked; empty for the server as a whole.
    pub service: String,
    pub runs: u32,
    /// How long one start may take before it counts as failed.
    pub timeout: Duration,
    pub json: bool,
}

// No line continuation on the first line: it would eat the indent.
pub const USAGE: &str = "  loadgen startup [--runs N] [--timeout D] [--service NAME] [--json] --target URL -- PROGRAM [ARGS...]
      start PROGRAM N times (default 5), one after another, and time each from spawn to
      SERVING at URL; the first run of a service on an empty DATA_DIR includes creating
      its database.
";

impl StartupOptions {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let (flags, program) = match args.iter().position(|a| a == "--") {
            Some(split) => (&args[..split], args[split + 1..].to_vec()),
            None => return Err("startup needs `-- PROGRAM [ARGS...]`".to_owned()),
        };
        if program.is_empty() {
            return Err("startup needs a program after `--`".to_owned());
        }
        let mut options = Self {
            program,
            target: String::new(),
            service: String::new(),
            runs: 5,
            timeout: Duration::from_secs(30),
            json: false,
        };
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            let mut value = || {
                flags
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--target" => options.target = value()?,
                "--service" => options.service = value()?,
                "--runs" => {
                    options.runs = value()?
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or("--runs must be a whole number from 1 to 100")?;
                }
                "--timeout" => options.timeout = crate::options::duration(&value()?, "timeout")?,
                "--json" => options.json = true,
                other => return Err(format!("unknown option {other}")),
            }
        }
        if options.target.is_empty() {
            return Err("startup needs --target URL".to_owned());
        }
        Ok(options)
    }
}

/// The start-up times of one program.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupReport {
    pub program: String,
    /// Milliseconds from spawn to SERVING, in run order.
    pub runs_ms: Vec<f64>,
    /// Resident memory right after SERVING, in KiB, per run.
    pub rss_kib: Vec<u64>,
}

impl StartupReport {
    /// The first run, which on an empty data directory creates the database.
    pub fn first_ms(&self) -> f64 {
        self.runs_ms.first().copied().unwrap_or_default()
    }

    /// The median of the runs after the first: a restart on an existing database.
    pub fn restart_median_ms(&self) -> f64 {
        let mut rest: Vec<f64> = self.runs_ms.iter().skip(1).copied().collect();
        if rest.is_empty() {
            return self.first_ms();
        }
        rest.sort_by(f64::total_cmp);
        rest[rest.len() / 2]
    }

    pub fn max_ms(&self) -> f64 {
        self.runs_ms.iter().copied().fold(0.0, f64::max)
    }

    pub fn json(&self) -> Value {
        json!({
            "program": self.program,
            "runs_ms": self.runs_ms,
            "first_ms": self.first_ms(),
            "restart_median_ms": self.restart_median_ms(),
            "max_ms": self.max_ms(),
            "rss_kib_at_serving": self.rss_kib,
        })
    }

    pub fn text(&self) -> String {
        let runs: Vec<String> = self.runs_ms.iter().map(|ms| format!("{ms:.1}")).collect();
        format!(
            "{}: spawn to SERVING {} ms (first {:.1}, restart median {:.1}, max {:.1})\n",
            self.program,
            runs.join(" "),
            self.first_ms(),
            self.restart_median_ms(),
            self.max_ms()
        )
    }
}

/// Starts the program `options.runs` times and times each start.
pub async fn measure(options: &StartupOptions) -> Result<StartupReport, Error> {
    let program = PathBuf::from(&options.program[0]);
    let mut report = StartupReport {
        program: program.file_name().map_or_else(
            || options.program[0].clone(),
            |n| n.to_string_lossy().into_owned(),
        ),
        runs_ms: Vec::new(),
        rss_kib: Vec::new(),
    };
    for _ in 0..options.runs {
        let (took, rss) = start_once(options).await?;
        report
            .runs_ms
            .push((took.as_secs_f64() * 1e6).round() / 1e3);
        report.rss_kib.push(rss);
    }
    Ok(report)
}

async fn start_once(options: &StartupOptions) -> Result<(Duration, u64), Error> {
    let started = Instant::now();
    let mut child = Command::new(&options.program[0])
        .args(&options.program[1..])
        .stdin(Stdio::null())
        // The service logs to stdout; its errors still reach stderr.
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: options.program[0].clone(),
            source,
        })?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    let deadline = started + options.timeout;
    let took = loop {
        let status = client::health(&options.target, &options.service, options.timeout).await;
        if status == Ok(ServingStatus::Serving) {
            break started.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Startup(format!(
                "{} exited during start-up ({status})",
                options.program[0]
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::Startup(format!(
                "{} did not report SERVING within {:?}",
                options.program[0], options.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let rss = pid.and_then(rss_kib).unwrap_or_default();

    // SIGTERM, as Kubernetes would, so the service drains and closes its database cleanly
    // before the next run opens it.
    if let Some(pid) = pid {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => {
            return Err(Error::Startup(format!(
                "{} stopped with {status}",
                options.program[0]
            )));
        }
        Ok(Err(error)) => {
            return Err(Error::Startup(format!(
                "cannot wait for {}: {error}",
                options.program[0]
            )));
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(Error::Startup(format!(
                "{} did not stop within 30s of SIGTERM",
                options.program[0]
            )));
        }
    }
    Ok((took, rss))
}

/// Resident memory of a process in KiB: `VmRSS` of `/proc/<pid>/status`.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_and_summary() {
        let options = StartupOptions::parse(&args(&[
            "--runs",
            "3",
            "--target",
            "http://127.0.0.1:1",
            "--json",
            "--",
            "target/release/echo",
        ]))
        .unwrap();
        assert_eq!(options.runs, 3);
        assert_eq!(options.program, ["target/release/echo"]);
        assert!(StartupOptions::parse(&args(&["--target", "http://x:1"])).is_err());
        assert!(StartupOptions::parse(&args(&["--", "echo"])).is_err());

        let report = StartupReport {
            program: "echo".to_owned(),
            runs_ms: vec![40.0, 9.0, 7.0, 8.0],
            rss_kib: vec![1, 2, 3, 4],
        };
        assert_eq!(report.first_ms(), 40.0);
        assert_eq!(report.restart_median_ms(), 8.0);
        assert_eq!(report.max_ms(), 40.0);
        assert_eq!(report.json()["restart_median_ms"], 8.0);
    }

    #[test]
    fn reads_own_rss() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(rss_kib(pid).unwrap() > 0);
    }
}
