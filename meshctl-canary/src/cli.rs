//! The command line: `meshctl-canary [--kubeconfig PATH] [--context NAME] [-n NS] <command>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Read and set the canary weights of meshmart's VirtualServices
///
/// For each service with `canary.enabled`, the chart renders a delegate VirtualService,
/// `<service>-weights`, that holds only the split between the stable version (its first
/// destination) and the canary (its second); the service's routes delegate to it. This tool
/// writes that object alone, by server-side apply with the field manager `meshctl`, and
/// marks it `meshmart.dev/weights-owner: meshctl`, so that a later `helm upgrade` keeps the
/// weights set here rather than the values' `canary.weight`.
///
/// Exit codes: 0 done, 1 no such canary (or a malformed delegate), 2 usage, 3 the
/// kubeconfig or the API server failed.
#[derive(Debug, Parser)]
#[command(name = "meshctl-canary", bin_name = "meshctl canary", version)]
pub struct Cli {
    /// The kubeconfig file; without it, KUBECONFIG or ~/.kube/config, as kubectl does
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; without it, the current context
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The release's namespace
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        default_value = "meshmart",
        global = true
    )]
    pub namespace: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each canary's weights, per route, and each version's ready replicas
    ///
    /// Every service with a canary, or the one named: the weights of each VirtualService
    /// route that sends it calls (through the delegate, or pinned to the canary by the
    /// canary header), and the ready and desired replicas of each version's Deployment
    /// (labelled app=<service>,version=<version>).
    Status {
        /// One service (catalog); without it, every service with a canary
        #[arg(value_parser = service_name)]
        service: Option<String>,
        /// How to print it
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Give the canary WEIGHT percent of calls and the stable version the rest
    Set {
        #[command(flatten)]
        target: Target,
        /// The canary's share, in percent
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        weight: u8,
    },
    /// Send every call to the canary (weight 100)
    Promote {
        #[command(flatten)]
        target: Target,
    },
    /// Send every call to the stable version (weight 0)
    Rollback {
        #[command(flatten)]
        target: Target,
    },
}

/// The service whose weights change, and whether to change them.
#[derive(Debug, Args)]
pub struct Target {
    /// The service (catalog)
    #[arg(value_parser = service_name)]
    pub service: String,
    /// Print the change and the object, have the API server validate it (dryRun=All), and
    /// change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl Command {
    /// The service, the canary weight to set and whether it is a dry run; `None` for
    /// `status`.
    pub fn weight_change(&self) -> Option<(&Target, u8)> {
        match self {
            Command::Status { .. } => None,
            Command::Set { target, weight } => Some((target, *weight)),
            Command::Promote { target } => Some((target, 100)),
            Command::Rollback { target } => Some((target, 0)),
        }
    }
}

/// A service's name: a DNS label (lowercase letters, digits, `-`), as the chart's services
/// are, so that `<service>-weights` names an object.
fn service_name(text: &str) -> Result<String, String> {
    let label = !text.is_empty()
        && text.len() <= 55
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if label {
        Ok(text.to_owned())
    } else {
        Err("a service is a DNS label: lowercase letters, digits and '-' (catalog)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_weight_is_a_percentage() {
        let cli = Cli::try_parse_from(["meshctl-canary", "set", "catalog", "100"]).unwrap();
        let (target, weight) = cli.command.weight_change().unwrap();
        assert_eq!((target.service.as_str(), weight), ("catalog", 100));
        let error = Cli::try_parse_from(["meshctl-canary", "set", "catalog", "101"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn promote_and_rollback_are_100_and_0() {
        let promote = Cli::try_parse_from(["meshctl-canary", "promote", "catalog"]).unwrap();
        assert_eq!(promote.command.weight_change().map(|(_, w)| w), Some(100));
        let rollback =
            Cli::try_parse_from(["meshctl-canary", "rollback", "catalog", "--dry-run"]).unwrap();
        let (target, weight) = rollback.command.weight_change().unwrap();
        assert!(target.dry_run);
        assert_eq!(weight, 0);
    }

    #[test]
    fn the_global_options_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from([
            "meshctl-canary",
            "--context",
            "kind",
            "status",
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.namespace, "shop");
        assert_eq!(cli.context.as_deref(), Some("kind"));
        assert!(matches!(
            cli.command,
            Command::Status {
                service: None,
                output: Format::Json
            }
        ));
        let default = Cli::try_parse_from(["meshctl-canary", "status"]).unwrap();
        assert_eq!(default.namespace, "meshmart");
    }

    #[test]
    fn a_service_is_a_dns_label() {
        for bad in ["Catalog", "a/b", "-x", ""] {
            assert!(
                Cli::try_parse_from(["meshctl-canary", "promote", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
