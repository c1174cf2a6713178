//! `meshctl`: meshmart's command line tool.
//!
//! - `meshctl up` runs the whole shop on this machine: every service as its own process
//!   on its fixed loopback port, with embedded storage, restarted when it exits, until
//!   Ctrl-C or SIGTERM.
//! - `meshctl serve <service>` runs one service in this process, configured from the
//!   environment exactly like the service's own binary.
//! - `meshctl dlq list|show|replay` works through the event bus's dead letters, with the
//!   orchestrator's DeadLetterService.
//! - `meshctl canary status|set|promote|rollback` reads and sets a canary's weights in a
//!   cluster: it runs the `meshctl-canary` binary, which has the Kubernetes client.
//! - `meshctl edge` runs Envoy in front of `meshctl up`: REST/JSON and gRPC on
//!   127.0.0.1:8080, with the chart's gateway filter config.
//! - `meshctl completions <shell>` prints shell completions.

// A command line tool talks to its user on stdout.
#![allow(clippy::print_stdout)]

mod canary;
mod children;
mod dlq;
mod edge;
mod supervise;
mod up;

use std::process::ExitCode;

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Run meshmart on this machine.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole shop on 127.0.0.1 until Ctrl-C or SIGTERM
    ///
    /// Start every service as its own process on its fixed port (catalog 127.0.0.1:50051 to
    /// orchestrator 127.0.0.1:50057), wait until all report SERVING, print commands to try,
    /// restart any that exits, and stop them all on Ctrl-C or SIGTERM.
    #[command(after_help = up::AFTER_HELP)]
    Up(up::Options),
    /// Run one service in this process
    ///
    /// Configured from the environment exactly like the service's own binary (README:
    /// Configuration); `meshctl up` runs each service this way.
    Serve {
        #[arg(value_enum)]
        service: Service,
    },
    /// Serve REST/JSON and gRPC on 127.0.0.1:8080 in front of `meshctl up`
    ///
    /// Runs Envoy with the transcoder config of the chart's ingress gateway: REST calls
    /// such as `curl 127.0.0.1:8080/v1/products/espresso-cup` become gRPC calls to the
    /// shop, errors come back as JSON, and the OpenAPI is at /openapi.yaml. Needs Envoy
    /// (--envoy, ENVOY; scripts/install-tools.sh installs one into .tools/bin).
    Edge(edge::Options),
    /// List, show and replay the event bus's dead letters
    ///
    /// Through the orchestrator's DeadLetterService (--orchestrator-addr, ORCHESTRATOR_ADDR).
    /// Exit codes: 1 no such dead letter, 2 usage, 3 the orchestrator is out of reach or
    /// failed.
    Dlq(dlq::Options),
    /// Show and set the canary weights of a release in a cluster
    ///
    /// Runs the meshctl-canary binary (beside meshctl, or on PATH; `cargo build -p
    /// meshctl-canary`) with these arguments: `meshctl canary --help` for its commands.
    #[command(disable_help_flag = true)]
    Canary {
        /// The arguments of meshctl-canary, as given
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Print shell completions
    ///
    /// For example:
    ///   meshctl completions bash > ~/.local/share/bash-completion/completions/meshctl
    ///   meshctl completions zsh > ~/.zfunc/_meshctl
    ///   meshctl completions fish > ~/.config/fish/completions/meshctl.fish
    #[command(verbatim_doc_comment)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The services `meshctl serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Service {
    Catalog,
    Inventory,
    Orders,
    Payments,
    Fulfillment,
    Notifications,
    Orchestrator,
}

/// Runs one service crate's `serve` as its own binary does: `meshmart::runtime::main`.
macro_rules! serve {
    ($service:ident) => {
        meshmart::runtime::main(
            $service::SERVICE,
            $service::Config::from_env,
            $service::serve,
        )
    };
}

impl Service {
    fn serve(self) -> ExitCode {
        match self {
            Self::Catalog => serve!(catalog),
            Self::Inventory => serve!(inventory),
            Self::Orders => serve!(orders),
            Self::Payments => serve!(payments),
            Self::Fulfillment => serve!(fulfillment),
            Self::Notifications => serve!(notifications),
            Self::Orchestrator => serve!(orchestrator),
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 2 and name the argument; --help and --version exit with 0.
    let cli = Cli::parse();
    match cli.command {
        Command::Up(options) => up::run(&options),
        Command::Dlq(options) => dlq::run(&options),
        Command::Edge(options) => edge::run(&options),
        Command::Serve { service } => service.serve(),
        Command::Canary { args } => canary::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "meshctl",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn canary_passes_every_argument_through() {
        let given = ["-n", "shop", "set", "catalog", "50", "--dry-run", "--help"];
        let cli = Cli::try_parse_from(["meshctl", "canary"].into_iter().chain(given)).unwrap();
        let Command::Canary { args } = cli.command else {
            panic!("not the canary command: {cli:?}");
        };
        assert_eq!(args, given.map(OsString::from));
        let bare = Cli::try_parse_from(["meshctl", "canary"]).unwrap();
        assert!(matches!(bare.command, Command::Canary { args } if args.is_empty()));
    }

    #[test]
    fn serve_takes_a_known_service() {
        let cli = Cli::try_parse_from(["meshctl", "serve", "inventory"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Serve {
                service: Service::Inventory
            }
        ));
        let error = Cli::try_parse_from(["meshctl", "serve", "shipping"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(
            error
                .to_string()
                .contains("catalog, inventory, orders, payments"),
            "{error}"
        );
    }
}
