//! Compiles the contracts in `proto/` into Rust servers and clients, and writes the
//! descriptor set that server reflection serves.

use std::{env, error::Error, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/meshmart/catalog/v1/catalog.proto",
    "proto/meshmart/inventory/v1/inventory.proto",
    "proto/meshmart/echo/v1/echo.proto",
    "proto/meshmart/events/v1/events.proto",
    "proto/meshmart/orders/v1/orders.proto",
    "proto/meshmart/payments/v1/payments.proto",
    "proto/meshmart/fulfillment/v1/fulfillment.proto",
    "proto/meshmart/notifications/v1/notifications.proto",
    "proto/meshmart/orchestrator/v1/orchestrator.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    // A vendored protoc keeps a fresh machine free of a system protobuf install.
    // SAFETY-free: build scripts are single-threaded, and PROTOC is read by prost-build only.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // The well-known types come from prost-types, so generated code and callers share them.
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("meshmart_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;

    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds these at compile time, and cannot tell the compiler to watch them.
    println!("cargo:rerun-if-changed=src/events/migrations");
    println!("cargo:rerun-if-changed=src/db/test-migrations");
    Ok(())
}
