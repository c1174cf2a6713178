//! The README's configuration table is the services' configuration: every variable a service
//! reads is in it, with the services that read it, and nothing in it is read by no one.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use meshmart::config::{ConfigError, Env, ServerConfig, ServiceInfo, TelemetryConfig};

type Reader = fn(&Env, ServiceInfo) -> Result<(), ConfigError>;

/// A service crate's configuration, read the way its `main` reads it.
macro_rules! reader {
    ($service:ident) => {
        ($service::SERVICE, |env, service| {
            $service::Config::from_env(env, ServerConfig::from_env(env, service)?).map(drop)
        })
    };
}

/// Every service `meshctl up` runs.
const SERVICES: &[(ServiceInfo, Reader)] = &[
    reader!(catalog),
    reader!(inventory),
    reader!(orders),
    reader!(payments),
    reader!(fulfillment),
    reader!(notifications),
    reader!(orchestrator),
];

/// Variable (or `PREFIX*` pattern) → the services the README says read it.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap();
    let all: BTreeSet<String> = SERVICES.iter().map(|(s, _)| s.name.to_owned()).collect();
    let mut table = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let services: BTreeSet<String> = match cells[2] {
            "all" => all.clone(),
            list => list.split(',').map(|s| s.trim().to_owned()).collect(),
        };
        for name in cells[1].split(',') {
            table.insert(name.trim().trim_matches('`').to_owned(), services.clone());
        }
    }
    table
}

fn documents(pattern: &str, variable: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => variable.starts_with(prefix),
        None => pattern == variable,
    }
}

#[test]
fn the_readme_table_is_what_the_services_read() {
    let documented = documented();
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (service, reader) in SERVICES {
        let env = Env::default();
        TelemetryConfig::from_env(&env).unwrap();
        reader(&env, *service).unwrap();
        for variable in env.variables_read() {
            read.entry(variable)
                .or_default()
                .insert(service.name.to_owned());
        }
    }
    for (variable, services) in &read {
        let row = documented
            .iter()
            .find(|(pattern, _)| documents(pattern, variable));
        let Some((pattern, listed)) = row else {
            panic!("{variable} is read by {services:?} but not in the README's table");
        };
        assert!(
            services.is_subset(listed),
            "{variable} ({pattern}) is read by {services:?}, the README says {listed:?}"
        );
    }
    for (pattern, listed) in &documented {
        // The SDK's own variables are read by the OpenTelemetry SDK, not through Env.
        if pattern.starts_with("OTEL_") && pattern != "OTEL_EXPORTER_OTLP_ENDPOINT" {
            continue;
        }
        let readers: BTreeSet<String> = read
            .iter()
            .filter(|(variable, _)| documents(pattern, variable))
            .flat_map(|(_, services)| services.clone())
            .collect();
        assert_eq!(&readers, listed, "the README's row for {pattern}");
    }
}
