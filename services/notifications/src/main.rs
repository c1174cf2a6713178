use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(
        notifications::SERVICE,
        notifications::Config::from_env,
        notifications::serve,
    )
}
