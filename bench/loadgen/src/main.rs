//! `loadgen`: generate load on meshmart, or time a service's start.

// A command line tool reports to its user on stdout; logs go to stderr.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use loadgen::{Error, LoadArgs, Options, startup::StartupOptions};
use meshmart::config::{Env, LogFormat, TelemetryConfig};
use tokio::sync::watch;

/// What clap exits with on a usage error, and so does a bad RUST_LOG or LOG_FORMAT.
const EXIT_USAGE: u8 = 2;

/// Load on meshmart's services, measured with HdrHistogram
///
/// Without a command, `run`. Every option of `run` and `wait` can also be set as a
/// LOADGEN_* variable (shown with each option); a flag wins over its variable. RUST_LOG and
/// LOG_FORMAT set the logs (on stderr) as they do for the services.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Wait until every service the mix calls reports SERVING, then send load (the default)
    ///
    /// Closed loop with --concurrency, else open loop at --rate. Without --duration or
    /// --max-requests it runs until SIGTERM or Ctrl-C, reporting every --report-interval.
    Run(LoadArgs),
    /// Only wait until every service the mix calls reports SERVING
    Wait(LoadArgs),
    /// Time a program from spawn to SERVING, several starts one after another
    ///
    /// The first run of a service on an empty DATA_DIR includes creating its database.
    Startup(StartupOptions),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let env = Env::from_process();
    let (wait_only, matches) = match (&cli.command, matches.subcommand()) {
        (Some(Command::Startup(options)), _) => {
            return with_runtime(&env, None, startup(options.clone()));
        }
        (Some(Command::Wait(_)), Some((_, sub))) => (true, sub),
        (Some(Command::Run(_)), Some((_, sub))) => (false, sub),
        _ => (false, &matches),
    };
    let options = options_or_exit(matches);
    with_runtime(&env, options.threads, load(options, wait_only))
}

fn options_or_exit(matches: &ArgMatches) -> Options {
    Options::from_matches(matches).unwrap_or_else(|error| error.format(&mut Cli::command()).exit())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_flag_with_its_variable() {
        let help = Cli::command().render_help().to_string();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(help.contains(&format!("--{long}")), "--{long}:\n{help}");
            if long == "help" || long == "version" {
                continue;
            }
            let variable = format!("LOADGEN_{}", long.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|v| v.to_str()),
                Some(variable.as_str())
            );
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{variable}:\n{help}"
            );
        }
        assert!(help.contains("[default: 5s]"), "{help}");
    }
}
