use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(
        orchestrator::SERVICE,
        orchestrator::Config::from_env,
        orchestrator::serve,
    )
}
