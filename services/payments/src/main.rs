use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(
        payments::SERVICE,
        payments::Config::from_env,
        payments::serve,
    )
}
