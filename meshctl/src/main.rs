//! `meshctl`: meshmart's command line tool.
//!
//! - `meshctl up` runs the whole shop on this machine: every service as its own process
//!   on its fixed loopback port, with embedded storage, until Ctrl-C or SIGTERM.
//! - `meshctl serve <service>` runs one service in this process, configured from the
//!   environment exactly like the service's own binary.

// A command line tool talks to its user on stdout.
#![allow(clippy::print_stdout)]

mod up;

use std::process::ExitCode;

const USAGE: &str = "\
meshctl: run meshmart on this machine

usage:
  meshctl up [--data-dir DIR] [--port-offset N]
      start every service on 127.0.0.1 (catalog :50051, inventory :50052), wait until all
      report SERVING, print commands to try, and stop them all on Ctrl-C or SIGTERM.
      --data-dir     where the services keep their SQLite databases (default: data)
      --port-offset  add N to every port, to run a second shop beside the first
  meshctl serve <catalog|inventory>
      run one service in this process, configured from the environment
  meshctl help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => match up::Options::parse(&args[1..]) {
            Ok(options) => up::run(&options),
            Err(error) => usage_error(&error),
        },
        Some("serve") => match args.get(1).map(String::as_str) {
            Some("catalog") => {
                meshmart::runtime::main(catalog::SERVICE, catalog::Config::from_env, catalog::serve)
            }
            Some("inventory") => meshmart::runtime::main(
                inventory::SERVICE,
                inventory::Config::from_env,
                inventory::serve,
            ),
            Some(other) => usage_error(&format!("unknown service {other:?}")),
            None => usage_error("serve needs a service name"),
        },
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("no command given"),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("meshctl: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
