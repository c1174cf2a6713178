//! `loadgen`: generate load on meshmart, or time a service's start.

// A command line tool reports to its user on stdout; logs go to stderr.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use loadgen::{Error, Options, startup::StartupOptions};
use meshmart::config::{Env, LogFormat, TelemetryConfig};
use tokio::sync::watch;

const EXIT_USAGE: u8 = 2;

fn usage() -> String {
    format!(
        "\
loadgen: load on meshmart's services, measured with HdrHistogram

usage:
  loadgen [run] [OPTIONS]
      wait until every service the mix calls reports SERVING, then send load: closed loop
      with --concurrency, else open loop at --rate. Without --duration or --max-requests
      it runs until SIGTERM or Ctrl-C, reporting every --report-interval. Every option can
      also be set as LOADGEN_<NAME> (LOADGEN_TARGET_CATALOG=http://catalog:50051); flags win.
  loadgen wait [OPTIONS]
      only wait until every service the mix calls reports SERVING
{}  loadgen help

options:
{}",
        loadgen::startup::USAGE,
        loadgen::options::help()
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::from_process();
    let (command, rest) = match args.first().map(String::as_str) {
        Some(command @ ("run" | "wait" | "startup")) => (command, &args[1..]),
        Some("help" | "-h" | "--help") => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        _ => ("run", &args[..]),
    };
    if command == "startup" {
        return match StartupOptions::parse(rest) {
            Ok(options) => with_runtime(&env, None, startup(options)),
            Err(error) => usage_error(&error),
        };
    }
    match Options::parse(&env, rest) {
        Ok(options) => with_runtime(&env, options.threads, load(options, command == "wait")),
        Err(error) => usage_error(&error),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}\n\n{}", usage());
    ExitCode::from(EXIT_USAGE)
}

fn with_runtime(
    env: &Env,
    threads: Option<usize>,
    work: impl Future<Output = ExitCode>,
) -> ExitCode {
    if let Err(error) = init_logs(env) {
        eprintln!("loadgen: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads);
    }
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            eprintln!("loadgen: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so that stdout carries only reports (`--json` is read by scripts).
/// `RUST_LOG` and `LOG_FORMAT` work as they do for the services.
fn init_logs(env: &Env) -> Result<(), String> {
    let config = TelemetryConfig::from_env(env).map_err(|e| e.to_string())?;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log_filter).map_err(|e| e.to_string())?;
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| e.to_string())
}

async fn load(options: Options, wait_only: bool) -> ExitCode {
    let (stop_tx, stop) = watch::channel(false);
    // SIGTERM (the Deployment being stopped) or Ctrl-C ends the run early; what was
    // measured so far is still reported, and the exit is clean.
    tokio::spawn(async move {
        meshmart::shutdown::signal().await;
        let _ = stop_tx.send(true);
    });
    if wait_only {
        return match loadgen::client::wait_until_serving(&options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => failed(&error),
        };
    }
    let json = options.json;
    let on_window = |report: &loadgen::Report| {
        tracing::info!(
            requests = report.total.requests,
            errors = report.total.failed(),
            throughput = report.total.throughput,
            p50_ms = report.total.p50_us as f64 / 1000.0,
            p99_ms = report.total.p99_us as f64 / 1000.0,
            max_ms = report.total.max_us as f64 / 1000.0,
            "load report"
        );
        if json {
            println!("{}", report.json());
        }
    };
    match loadgen::execute(&options, stop, on_window).await {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(Error::Stopped) => ExitCode::SUCCESS,
        Err(error) => failed(&error),
    }
}

async fn startup(options: StartupOptions) -> ExitCode {
    match loadgen::startup::measure(&options).await {
        Ok(report) => {
            if options.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(error) => failed(&error),
    }
}

fn failed(error: &Error) -> ExitCode {
    tracing::error!(%error, "loadgen failed");
    ExitCode::FAILURE
}
