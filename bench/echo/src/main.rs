use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(echo::SERVICE, echo::Config::from_env, echo::serve)
}
