//! `meshctl dlq` as a user runs it: the real binary against an orchestrator served in this
//! process, whose consumer has given up on a poison event.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use meshmart::{
    config::FlowConfig,
    events::{ConsumerConfig, EventBus, EventsConfig, Outgoing, embedded::EmbeddedConfig},
    proto::orchestrator::{
        ListDeadLettersRequest, dead_letter_service_client::DeadLetterServiceClient,
    },
    testing::{self, Backend, TestServer},
};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `meshctl dlq <args>` against `addr`: exit code, stdout, stderr.
async fn dlq(addr: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .arg("dlq")
            .args(args)
            .env("ORCHESTRATOR_ADDR", addr)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn list_show_and_replay_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let events = EventsConfig::Embedded(EmbeddedConfig::at(dir.path().join("events.db")));
    let config = orchestrator::Config {
        flow: FlowConfig {
            server: testing::server_config(orchestrator::SERVICE),
            database: testing::database(Backend::Sqlite, dir.path(), "dlq").await,
            events: events.clone(),
            consumer: ConsumerConfig::with_defaults("orchestrator", &orchestrator::SUBJECTS),
        },
        // Never called: the poison event does not get that far.
        inventory_addr: "http://127.0.0.1:9".to_owned(),
    };
    let server = TestServer::spawn(&config.flow.server.clone(), |listeners, shutdown| {
        orchestrator::serve(config, listeners, shutdown)
    })
    .await;
    let addr = server.endpoint();
    let bus = meshmart::events::connect(&events).await.unwrap();
    bus.publish(Outgoing {
        subject: "orders.created".to_owned(),
        message_id: "poison-1".to_owned(),
        headers: Default::default(),
        payload: vec![0xff, 0xff].into(),
    })
    .await
    .unwrap();
    let mut client = DeadLetterServiceClient::connect(addr.clone())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let id = loop {
        let letters = client
            .list_dead_letters(ListDeadLettersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .dead_letters;
        if let Some(letter) = letters.first() {
            break letter.dead_letter_id.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let (code, out, err) = dlq(&addr, &["list"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(lines[1].starts_with(&id), "{out}");
    assert!(
        lines[1].contains("orchestrator") && lines[1].contains("orders.created"),
        "{out}"
    );
    let (code, out, _) = dlq(&addr, &["list", "--consumer", "payments"]).await;
    assert_eq!((code, out.as_str()), (0, "no dead letters\n"));

    let (code, out, err) = dlq(&addr, &["show", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("meshmart.events.v1.OrderCreated"), "{out}");
    assert!(out.contains("poison-1") && out.contains("decode"), "{out}");

    let (code, out, err) = dlq(&addr, &["--orchestrator-addr", &addr, "replay", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("orders.created delivered again to orchestrator"),
        "{out}"
    );
    let (code, out, err) = dlq(&addr, &["replay", &id]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!("dead letter {id} not found")),
        "{err}"
    );
    let (code, _, err) = dlq(&addr, &["show", "999999"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");

    // Nothing listening: the orchestrator is out of reach.
    let (code, _, err) = dlq("http://127.0.0.1:9", &["list"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("cannot reach the orchestrator"), "{err}");
    server.stop().await.unwrap();
}
