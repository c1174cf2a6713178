//! Keeping every service running once the shop is up, as a kubelet keeps a pod's containers
//! with `restartPolicy: Always`: a service that exits, however it exits (a crash, a kill
//! from outside, exit 0), is started again after a backoff, on the same port with the same
//! data, and is back once it reports SERVING again.
//!
//! The backoff starts at [`FIRST_DELAY`] and doubles up to [`MAX_DELAY`] while the service
//! keeps failing; once it has been SERVING for [`RESET_AFTER`], its next exit starts again
//! from the first delay. That is the kubelet's shape (10 s doubling to 5 min, reset after
//! 10 min, twice the cap) scaled down for one laptop instead of a fleet: a one-off crash is
//! back within a second or two, yet a service that fails at once costs one start every
//! 30 s, and once the cause is gone (a port freed, a disk emptied) it is back within 30 s
//! without restarting meshctl. Like CrashLoopBackOff it never gives up: a service that
//! keeps failing is tried again every [`MAX_DELAY`], saying so each time, until meshctl
//! stops. A restarted service that does not report SERVING within [`START_TIMEOUT`] is
//! killed and counts as one more failure, as a failed startup probe would.
//!
//! Stopping wins over restarting: once meshctl is stopping, a supervisor stops waiting and
//! hands back the process it has, if any, to be stopped like the others; a service that
//! exits from then on is not started again.

use std::{fmt, io::Write, time::Duration};

use meshmart::probe;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    children::{self, Child, Launch},
    up::START_TIMEOUT,
};

/// The delay before the first restart after a healthy run.
const FIRST_DELAY: Duration = Duration::from_secs(1);

/// The longest delay, however often a service has failed.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// How long a service must report SERVING before its next exit counts as a first failure.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// A service that `up` started, and what it takes to start it again.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) launch: Launch,
    /// Where its health is asked: `http://host:port`.
    pub(crate) endpoint: String,
    pub(crate) child: Child,
}

/// One supervisor per service, in start order.
#[derive(Debug)]
pub(crate) struct Supervisors {
    tasks: Vec<(&'static str, JoinHandle<Option<Child>>)>,
    stopping: watch::Sender<bool>,
}

/// Starts keeping `services` running; each of them reports SERVING now.
pub(crate) fn supervise(services: Vec<Service>) -> Supervisors {
    let (stopping, stop_rx) = watch::channel(false);
    let tasks = services
        .into_iter()
        .map(|service| {
            let name = service.launch.service.name;
            (name, tokio::spawn(keep_running(service, stop_rx.clone())))
        })
        .collect();
    Supervisors { tasks, stopping }
}

impl Supervisors {
    /// Ends every backoff wait and restart, and hands back the processes there are, in
    /// start order, for [`children::stop_all`]; false if a supervisor failed.
    pub(crate) async fn stop(self) -> (Vec<Child>, bool) {
        // An error means every supervisor has ended already: nothing left to tell.
        let _ = self.stopping.send(true);
        let mut left = Vec::new();
        let mut clean = true;
        for (name, task) in self.tasks {
            match task.await {
                Ok(Some(child)) => left.push(child),
                Ok(None) => {
                    let _ = writeln!(
                        std::io::stdout(),
                        "meshctl: {name} was waiting to restart; nothing to stop"
                    );
                }
                Err(error) => {
                    // Its process went with the task: dropped, and so killed.
                    say(format_args!("supervising {name} failed: {error}"));
                    clean = false;
                }
            }
        }
        (left, clean)
    }
}

/// Restarts `service` whenever it exits, until meshctl stops; then returns its process, if
/// one is running or starting.
async fn keep_running(mut service: Service, mut stopping: watch::Receiver<bool>) -> Option<Child> {
    let name = service.launch.service.name;
    // Restarts since it was last healthy: what the next delay is made from.
    let mut attempt: u32 = 0;
    // Since when it has reported SERVING; None while a restart is starting.
    let mut serving_since = Some(Instant::now());
    let mut down_since = Instant::now();
    loop {
        let child = &mut service.child;
        let exit = tokio::select! {
            // Once meshctl stops, an exit is the stop's to report, not a reason to restart.
            biased;
            () = stopped(&mut stopping) => return Some(service.child),
            exit = child.wait() => match exit {
                Ok(status) => format!("exited ({status})"),
                Err(error) => {
                    // It may still run, and must not hold the port against the next one.
                    let _ = child.kill().await;
                    format!("could not be waited for ({error}); killed it")
                }
            },
            ready = probe::wait_until_serving(&service.endpoint, "", START_TIMEOUT),
                if serving_since.is_none() =>
            {
                match ready {
                    Ok(_) => {
                        say(format_args!(
                            "{name} is back: serving again {:.1?} after it went down (attempt {attempt})",
                            down_since.elapsed()
                        ));
                        serving_since = Some(Instant::now());
                        continue;
                    }
                    Err(error) => {
                        say(format_args!("{name} is not serving: {error}; killing it (SIGKILL)"));
                        match child.kill().await {
                            Ok(status) => format!("was killed ({status})"),
                            Err(error) => format!("could not be killed ({error})"),
                        }
                    }
                }
            }
        };
        if serving_since.is_some() {
            down_since = Instant::now();
        }
        // Its last words (a panic, say) come before meshctl's line about them.
        if !service.child.copy_the_rest().await {
            children::say_output_lost(name);
        }
        if serving_since.is_some_and(|since| since.elapsed() >= RESET_AFTER) {
            attempt = 0;
        }
        serving_since = None;
        attempt = attempt.saturating_add(1);
        let mut delay = backoff(attempt);
        say(format_args!(
            "{name} {exit}; restarting it in {delay:?} (attempt {attempt})"
        ));
        service.child = loop {
            tokio::select! {
                biased;
                () = stopped(&mut stopping) => return None,
                () = tokio::time::sleep(delay) => {}
            }
            match service.launch.spawn() {
                Ok(child) => break child,
                Err(error) => {
                    attempt = attempt.saturating_add(1);
                    delay = backoff(attempt);
                    say(format_args!(
                        "cannot restart {name}: {error}; trying again in {delay:?} (attempt {attempt})"
                    ));
                }
            }
        };
    }
}

/// The delay before restart `attempt` since the service was last healthy (the first is 1).
fn backoff(attempt: u32) -> Duration {
    2_u32
        .checked_pow(attempt.saturating_sub(1))
        .and_then(|factor| FIRST_DELAY.checked_mul(factor))
        .map_or(MAX_DELAY, |delay| delay.min(MAX_DELAY))
}

/// Completes once meshctl is stopping.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, and with it whoever could stop this: stop too.
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// One line on stderr. A closed terminal must not end the supervision with a panic, so a
/// line that cannot be written is dropped.
fn say(line: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "meshctl: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_one_second_to_thirty() {
        let delays: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
        // Twice the cap, as the kubelet's 10 min reset is twice its 5 min cap.
        assert_eq!(RESET_AFTER, MAX_DELAY * 2);
    }
}
