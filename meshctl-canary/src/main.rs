//! `meshctl-canary`: see the library's docs; `meshctl canary ...` runs this binary.

use std::process::ExitCode;

use clap::Parser;
use meshctl_canary::{Cli, Error};

fn main() -> ExitCode {
    // Usage errors exit with 2 and name the argument; --help and --version exit with 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("meshctl canary: start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result: Result<(), Error> = runtime.block_on(async {
        let client = meshctl_canary::client(&cli).await?;
        let mut stdout = std::io::stdout().lock();
        meshctl_canary::run(&cli, &client, &mut stdout).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshctl canary: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
