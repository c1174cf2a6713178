use std::process::ExitCode;

fn main() -> ExitCode {
    meshmart::runtime::main(catalog::SERVICE, catalog::Config::from_env, catalog::serve)
}
