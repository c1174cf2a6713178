//! The loadgen binary's command line: `LOADGEN_*` variables as the chart's Deployment sets
//! them, flags winning over them, and usage errors (exit 2) naming the flag. Nothing here
//! listens: a wait on port 1 fails at once, which shows the options were taken (exit 1).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

/// Runs loadgen with exactly `env` (nothing inherited that could hold a LOADGEN_*).
fn loadgen(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .env("LOG_FORMAT", "text")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    (status.code(), text)
}

const NOWHERE: &str = "http://127.0.0.1:1";

#[test]
fn the_deployments_variables_are_read() {
    // As helm/meshmart/templates/k8s/loadgen.yaml sets them, plus where to wait.
    let (code, text) = loadgen(
        &[
            ("LOADGEN_TARGET_CATALOG", NOWHERE),
            ("LOADGEN_RATE", "10"),
            ("LOADGEN_MIX", "get-product=3,list-products=1"),
            ("LOADGEN_DURATION", "0"),
            ("LOADGEN_JSON", "true"),
            ("LOADGEN_WAIT_TIMEOUT", "300ms"),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("catalog: http://127.0.0.1:1 did not report SERVING"),
        "{text}"
    );
}

#[test]
fn flags_win_over_variables() {
    let env = [
        ("LOADGEN_TARGET_CATALOG", "http://127.0.0.1:2"),
        ("LOADGEN_RATE", "5"),
        ("LOADGEN_WAIT_TIMEOUT", "300ms"),
    ];
    // The flag's address is the one waited for.
    let (code, text) = loadgen(&env, &["wait", "--target-catalog", NOWHERE]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(NOWHERE), "{text}");
    // Pacing as a flag replaces pacing as a variable, whichever kind.
    let (code, text) = loadgen(&env, &["wait", "--concurrency", "4"]);
    assert_eq!(code, Some(1), "{text}");
    let env = [
        ("LOADGEN_CONCURRENCY", "4"),
        ("LOADGEN_WAIT_TIMEOUT", "300ms"),
    ];
    let (code, text) = loadgen(&env, &["--rate", "100", "--target-catalog", NOWHERE]);
    assert_eq!(code, Some(1), "{text}");
}

#[test]
fn mistakes_exit_2_naming_the_flag() {
    for (env, args, needle) in [
        (&[("LOADGEN_RATE", "abc")][..], &[][..], "--rate"),
        (&[("LOADGEN_JSON", "maybe")][..], &["wait"][..], "--json"),
        (
            &[("LOADGEN_CONCURRENCY", "4"), ("LOADGEN_RATE", "5")][..],
            &[][..],
            "LOADGEN_CONCURRENCY (closed loop) or LOADGEN_RATE (open loop), not both",
        ),
        (
            &[][..],
            &["run", "--concurrency", "4", "--rate", "5"][..],
            "--concurrency (closed loop) or --rate (open loop), not both",
        ),
        (
            &[][..],
            &["--concurency", "4"][..],
            "tip: a similar argument exists: '--concurrency'",
        ),
        (
            &[][..],
            &["--mix", "echo", "wait"][..],
            "the subcommand 'wait' cannot be used with '--mix",
        ),
        (&[][..], &["startup", "--target", NOWHERE][..], "<PROGRAM>"),
    ] {
        let (code, text) = loadgen(env, args);
        assert_eq!(code, Some(2), "{env:?} {args:?}: {text}");
        assert!(text.contains(needle), "{env:?} {args:?}: {text}");
    }
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let (code, help) = loadgen(&[], &["--help"]);
    assert_eq!(code, Some(0), "{help}");
    for (variable, default) in [
        ("LOADGEN_TARGET_CATALOG", Some("http://127.0.0.1:50051")),
        ("LOADGEN_TARGET_ECHO", Some("http://127.0.0.1:50050")),
        ("LOADGEN_MIX", Some("get-product=3,list-products=1")),
        ("LOADGEN_CONCURRENCY", None),
        ("LOADGEN_RATE", Some("10")),
        ("LOADGEN_MAX_IN_FLIGHT", Some("512")),
        ("LOADGEN_DURATION", None),
        ("LOADGEN_WARMUP", Some("0s")),
        ("LOADGEN_MAX_REQUESTS", None),
        ("LOADGEN_TIMEOUT", Some("5s")),
        ("LOADGEN_CONNECTIONS", Some("1")),
        ("LOADGEN_WAIT_TIMEOUT", Some("120s")),
        ("LOADGEN_REPORT_INTERVAL", Some("60s")),
        ("LOADGEN_PAGE_SIZE", Some("20")),
        ("LOADGEN_ECHO_BYTES", Some("64")),
        ("LOADGEN_SEED", Some("1")),
        ("LOADGEN_THREADS", None),
        ("LOADGEN_JSON", None),
    ] {
        let at = help
            .find(&format!("[env: {variable}="))
            .unwrap_or_else(|| panic!("{variable} is not in the help:\n{help}"));
        if let Some(default) = default {
            // The default follows its variable, before the next option.
            let rest = &help[at..];
            let next = rest.find("\n      --").unwrap_or(rest.len());
            assert!(
                rest[..next].contains(&format!("[default: {default}]")),
                "{variable}: {}",
                &rest[..next]
            );
        }
    }
}
