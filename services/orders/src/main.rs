use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(orders::SERVICE, orders::Config::from_env, orders::serve)
}
