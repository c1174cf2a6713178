use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(
        inventory::SERVICE,
        inventory::Config::from_env,
        inventory::serve,
    )
}
