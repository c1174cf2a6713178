//! The services as child processes: started with their output copied line by line, and
//! stopped for sure.
//!
//! Stopping sends SIGTERM, then gives each child its own drain delay plus grace period plus
//! [`EXIT_MARGIN`] to exit; one that has not by then gets SIGKILL. A second SIGINT or
//! SIGTERM to meshctl while it stops sends SIGKILL to every child left at once. Either way
//! meshctl then waits for each child's output to be copied to the end, so the last lines a
//! service logs are never lost.

use std::{
    io::Write,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use meshmart::config::{ConfigError, Env, ServerConfig, ServiceInfo};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::Command,
    signal::unix::{SignalKind, signal},
    sync::watch,
    task::{JoinHandle, JoinSet},
    time::Instant,
};

/// After its drain delay and grace period, how long a service may take to close its
/// database, flush its logs and exit.
const EXIT_MARGIN: Duration = Duration::from_secs(5);

/// How long a child's output may still flow after it exited. Only a grandchild holding its
/// pipes open could take longer, and meshmart's services start none.
const OUTPUT_MARGIN: Duration = Duration::from_secs(5);

/// A running service.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) service: ServiceInfo,
    process: tokio::process::Child,
    /// The tasks copying its stdout and stderr.
    output: Vec<JoinHandle<()>>,
    /// From SIGTERM to SIGKILL.
    stop_within: Duration,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How to start one service, kept so that it can be started again.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// meshctl's own executable: each service runs as `meshctl serve <service>`.
    pub(crate) exe: PathBuf,
    pub(crate) service: ServiceInfo,
    /// What meshctl sets on top of its own environment.
    pub(crate) vars: Vec<(&'static str, String)>,
    /// Put before each line the service writes.
    pub(crate) prefix: String,
}

impl Launch {
    /// Starts `exe serve <service>` and says so with its pid (`meshctl: started <service>
    /// pid=<n>`), the one place a pid shows, so that a restart's new process can be told.
    pub(crate) fn spawn(&self) -> Result<Child, SpawnError> {
        let Self {
            exe,
            service,
            vars,
            prefix,
        } = self;
        // The drain delay and grace period as the child will read them: from the same
        // environment, with the same function and defaults.
        let env = Env::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .chain(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))),
        );
        let config = ServerConfig::from_env(&env, *service)?;
        let mut process = Command::new(exe)
            .args(["serve", service.name])
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Should meshctl itself fail, no service outlives it.
            .kill_on_drop(true)
            .spawn()?;
        if let Some(pid) = process.id() {
            let _ = writeln!(
                std::io::stdout(),
                "meshctl: started {} pid={pid}",
                service.name
            );
        }
        let mut output = Vec::new();
        if let Some(stdout) = process.stdout.take() {
            output.push(tokio::spawn(copy_lines(stdout, prefix.clone(), false)));
        }
        if let Some(stderr) = process.stderr.take() {
            output.push(tokio::spawn(copy_lines(stderr, prefix.clone(), true)));
        }
        Ok(Child {
            service: *service,
            process,
            output,
            stop_within: config.drain_delay + config.grace_period + EXIT_MARGIN,
        })
    }
}

impl Child {
    /// Completes when it exits, saying how. Cancel-safe: dropped unfinished, it can be
    /// awaited again.
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.process.wait().await
    }

    /// Once it has exited: waits for its output to be copied to the end, within
    /// [`OUTPUT_MARGIN`]; false if some of it was not.
    pub(crate) async fn copy_the_rest(&mut self) -> bool {
        tokio::time::timeout(OUTPUT_MARGIN, async {
            for task in self.output.drain(..) {
                let _ = task.await;
            }
        })
        .await
        .is_ok()
    }

    fn terminate(&self) {
        // `id` is None once the child has been reaped, so no other process is signalled.
        if let Some(pid) = self.process.id().and_then(|id| i32::try_from(id).ok()) {
            // Already gone is fine: there is nothing left to stop.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Waits for the child to exit after SIGTERM (sent at `sent`), killing it when it is
    /// overdue or when `kill_now` turns true; then waits for its output to be copied.
    async fn stop(mut self, sent: Instant, mut kill_now: watch::Receiver<bool>) -> Stopped {
        let deadline = sent + self.stop_within;
        let mut killed = None;
        let status = tokio::select! {
            // An exit that is already there counts as one, not as a kill.
            biased;
            status = self.process.wait() => status,
            () = tokio::time::sleep_until(deadline) => {
                killed = Some(Killed::Overdue(self.stop_within));
                self.kill().await
            }
            // The guard `wait_for` returns must not be held across the kill.
            true = async { kill_now.wait_for(|now| *now).await.is_ok() } => {
                killed = Some(Killed::Asked);
                self.kill().await
            }
        };
        let output_lost = !self.copy_the_rest().await;
        Stopped {
            name: self.service.name,
            status,
            killed,
            output_lost,
        }
    }

    pub(crate) async fn kill(&mut self) -> std::io::Result<ExitStatus> {
        // SIGKILL ends a stopped (SIGSTOP) process too; `wait` reaps it.
        self.process.start_kill()?;
        self.process.wait().await
    }
}

/// Copies a child's output line by line, each line marked with the service's name, until
/// the child closes it.
async fn copy_lines(stream: impl AsyncRead + Unpin, prefix: String, to_stderr: bool) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // Bytes that are not UTF-8 are shown replaced rather than ending the copy.
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        // A closed terminal or pipe must not take the shop down with a panic: drop the line.
        let _ = if to_stderr {
            writeln!(std::io::stderr(), "{prefix}{text}")
        } else {
            writeln!(std::io::stdout(), "{prefix}{text}")
        };
    }
}

#[derive(Debug)]
enum Killed {
    /// It had not exited this long after SIGTERM.
    Overdue(Duration),
    /// A second signal asked meshctl to stop at once.
    Asked,
}

#[derive(Debug)]
struct Stopped {
    name: &'static str,
    status: std::io::Result<ExitStatus>,
    killed: Option<Killed>,
    output_lost: bool,
}

impl Stopped {
    /// Says how it ended; true if cleanly.
    fn report(&self) -> bool {
        let exited_cleanly = match (&self.killed, &self.status) {
            (Some(Killed::Overdue(after)), _) => {
                eprintln!(
                    "meshctl: {} did not exit within {after:?} of SIGTERM; killed it (SIGKILL)",
                    self.name
                );
                false
            }
            (Some(Killed::Asked), _) => {
                eprintln!("meshctl: {} killed (SIGKILL)", self.name);
                false
            }
            (None, Ok(status)) if status.success() => {
                let _ = writeln!(std::io::stdout(), "meshctl: {} stopped cleanly", self.name);
                true
            }
            (None, Ok(status)) => {
                eprintln!("meshctl: {} stopped with {status}", self.name);
                false
            }
            (None, Err(error)) => {
                eprintln!("meshctl: cannot wait for {}: {error}", self.name);
                false
            }
        };
        if self.output_lost {
            say_output_lost(self.name);
        }
        exited_cleanly && !self.output_lost
    }
}

/// On stderr: not every line `name` wrote before it exited was copied.
pub(crate) fn say_output_lost(name: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "meshctl: {name}'s output was still open {OUTPUT_MARGIN:?} after it exited; not all of it was copied"
    );
}

/// SIGTERM and SIGINT, listened for from the start so that none is missed between the
/// first (stop) and the second (stop now).
#[derive(Debug)]
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn listen() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal to arrive.
    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Stops every child: SIGTERM in reverse start order (callers before callees), then waits
/// for all at once, each within its own time. Success only if every one exited 0 by itself.
pub(crate) async fn stop_all(children: Vec<Child>, signals: &mut Signals) -> bool {
    for child in children.iter().rev() {
        child.terminate();
    }
    let sent = Instant::now();
    let (kill_now, kill_rx) = watch::channel(false);
    let mut stopping = JoinSet::new();
    for child in children.into_iter().rev() {
        stopping.spawn(child.stop(sent, kill_rx.clone()));
    }
    let mut clean = true;
    loop {
        tokio::select! {
            next = stopping.join_next() => match next {
                None => break,
                Some(Ok(stopped)) => clean &= stopped.report(),
                Some(Err(error)) => {
                    eprintln!("meshctl: a stopping task failed: {error}");
                    clean = false;
                }
            },
            name = signals.next(), if !*kill_now.borrow() => {
                eprintln!("meshctl: {name} again; killing the services still running (SIGKILL)");
                let _ = kill_now.send(true);
                clean = false;
            }
        }
    }
    clean
}
