//! One service as its own process (`meshctl serve <service>`) on free loopback ports, for
//! the tests that stop, kill and load real processes.

#![allow(dead_code, unreachable_pub)]

pub mod grpcurl;
pub mod shop;

use std::{path::Path, process::Stdio, time::Duration};

use meshmart::probe::wait_until_serving;
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::process::{Child, Command};

/// A loopback address nothing listens on right now.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Starts `service` with its data in `data` and `env` on top of the defaults, its logs
/// (JSON) on a pipe when `capture_logs`, and waits until it reports SERVING. Returns the
/// process and its gRPC endpoint (`http://...`).
pub async fn serve(
    service: &str,
    data: &Path,
    env: &[(&str, &str)],
    capture_logs: bool,
) -> (Child, String) {
    let grpc = free_addr();
    let logs = || {
        if capture_logs {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let child = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["serve", service])
        .env("GRPC_ADDR", &grpc)
        .env("METRICS_ADDR", free_addr())
        .env("DATA_DIR", data)
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdout(logs())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://{grpc}");
    wait_until_serving(&endpoint, "", Duration::from_secs(60))
        .await
        .unwrap();
    (child, endpoint)
}

/// Sends `signal` to a running child.
pub fn send(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}
