use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(
        fulfillment::SERVICE,
        fulfillment::Config::from_env,
        fulfillment::serve,
    )
}
