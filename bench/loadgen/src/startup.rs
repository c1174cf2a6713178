//! `loadgen startup`: how long a service takes from process start to SERVING.
//!
//! The clock starts just before the process is spawned and stops when a health check says
//! SERVING. Until the port is bound, a connection is refused at once and retried 1 ms
//! later; once it is bound, the check waits in the listen backlog and is answered the
//! moment the server runs. So the figure is late by at most about 1 ms plus one loopback
//! round trip, and never early.

use std::{collections::VecDeque, path::PathBuf, process::Stdio, time::Duration};

use meshmart::probe::{HealthProbe, ServingStatus};
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{ChildStdout, Command},
    task::JoinHandle,
    time::Instant,
};

use crate::Error;

/// What to start and how to know it is up.
#[derive(Debug, Clone, clap::Args)]
pub struct StartupOptions {
    /// The program and its arguments; it is configured by the environment it inherits
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
    /// Where it serves, http://127.0.0.1:PORT
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// The gRPC service whose health is checked; empty for the server as a whole
    #[arg(long, value_name = "NAME", default_value = "")]
    pub service: String,
    /// How many times to start it, one after another
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// How long one start may take before it counts as failed
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = crate::options::duration)]
    pub timeout: Duration,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
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
        // The service logs to stdout, its reason for failing too: kept, for the error.
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: options.program[0].clone(),
            source,
        })?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    let log = child.stdout.take().map(last_lines);
    let failed = |what: String| async move {
        let last = match log {
            // It has exited, or will once it is killed on drop: the pipe ends.
            Some(log) => log.await.unwrap_or_default(),
            None => Vec::new(),
        };
        Error::Startup(if last.is_empty() {
            what
        } else {
            format!("{what}; its last lines:\n{}", last.join("\n"))
        })
    };
    // Tried again 1 ms after a refused connection: the figure is late by at most that.
    let probe = HealthProbe::new(&options.target, &options.service)
        .interval(Duration::from_millis(1))
        .attempt_timeout(options.timeout);
    let took = tokio::select! {
        serving = probe.wait_for(ServingStatus::Serving, options.timeout) => match serving {
            Ok(_) => started.elapsed(),
            Err(error) => {
                return Err(Error::Startup(format!("{}: {error}", options.program[0])));
            }
        },
        status = child.wait() => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(failed(format!(
                "{} exited during start-up ({status})",
                options.program[0]
            ))
            .await);
        }
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
            return Err(failed(format!("{} stopped with {status}", options.program[0])).await);
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

/// How many of a failed start's last log lines its error shows.
const LAST_LINES: usize = 10;

/// Reads the service's log to its end, keeping the last [`LAST_LINES`] lines.
fn last_lines(stdout: ChildStdout) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut last = VecDeque::with_capacity(LAST_LINES);
        while let Ok(Some(line)) = lines.next_line().await {
            if last.len() == LAST_LINES {
                last.pop_front();
            }
            last.push_back(line);
        }
        last.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Startup {
        #[command(flatten)]
        options: StartupOptions,
    }

    fn parse(args: &[&str]) -> Result<StartupOptions, clap::Error> {
        use clap::Parser;
        Startup::try_parse_from(std::iter::once("startup").chain(args.iter().copied()))
            .map(|s| s.options)
    }

    #[test]
    fn options_and_summary() {
        let options = parse(&[
            "--runs",
            "3",
            "--target",
            "http://127.0.0.1:1",
            "--json",
            "--",
            "target/dist/echo",
            "--flag-of-echo",
        ])
        .unwrap();
        assert_eq!(options.runs, 3);
        assert_eq!(options.program, ["target/dist/echo", "--flag-of-echo"]);
        assert_eq!(options.timeout, Duration::from_secs(30));
        assert!(parse(&["--target", "http://x:1"]).is_err());
        assert!(parse(&["--", "echo"]).is_err());
        assert!(parse(&["--runs", "0", "--target", "http://x:1", "--", "echo"]).is_err());

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

    /// A start that fails says why: the program's last log lines are in the error.
    #[tokio::test]
    async fn a_failed_start_shows_its_last_log_lines() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = parse(&[
            "--target",
            &format!("http://127.0.0.1:{port}"),
            "--",
            "sh",
            "-c",
            "for i in $(seq 12); do echo \"line $i\"; done; exit 3",
        ])
        .unwrap();
        let error = measure(&options).await.unwrap_err().to_string();
        assert!(error.contains("exited during start-up"), "{error}");
        assert!(
            error.ends_with(
                "line 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\nline 10\nline 11\nline 12"
            ),
            "{error}"
        );
    }

    #[test]
    fn reads_own_rss() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(rss_kib(pid).unwrap() > 0);
    }
}
