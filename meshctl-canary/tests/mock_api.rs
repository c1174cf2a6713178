//! The requests meshctl-canary makes and how it takes the answers, against a mocked API
//! server (tower-test's mock service, as kube-rs's own tests use): each test walks a
//! scenario of expected requests and canned answers, every step bounded by a timeout, and
//! then checks that nothing else was asked.

// The scenario's helpers are test code too: a broken expectation is a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use meshctl_canary::{Cli, Error};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

/// How long one step may wait for its request.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

const DELEGATE_URL: &str =
    "/apis/networking.istio.io/v1/namespaces/meshmart/virtualservices/catalog-weights";
const VIRTUAL_SERVICES_URL: &str =
    "/apis/networking.istio.io/v1/namespaces/meshmart/virtualservices";
const DEPLOYMENTS_URL: &str = "/apis/apps/v1/namespaces/meshmart/deployments";

/// One expected request and its answer.
struct Step {
    method: Method,
    path: &'static str,
    /// `key=value` pairs the query must have (as sent: percent-encoded).
    query: Vec<&'static str>,
    /// `key=value` pairs the query must not have.
    not_query: Vec<&'static str>,
    reply: Reply,
}

enum Reply {
    Json(StatusCode, Value),
    /// No answer at all: the connection failed.
    Unreachable,
}

impl Step {
    fn new(method: Method, path: &'static str, reply: Reply) -> Self {
        Step {
            method,
            path,
            query: Vec::new(),
            not_query: Vec::new(),
            reply,
        }
    }

    fn query(mut self, pairs: &[&'static str]) -> Self {
        self.query.extend(pairs);
        self
    }

    fn not_query(mut self, pairs: &[&'static str]) -> Self {
        self.not_query.extend(pairs);
        self
    }
}

/// What the scenario saw of one request.
#[derive(Debug)]
struct Seen {
    content_type: Option<String>,
    body: Value,
}

/// Answers the scenario's requests in order, checking each; then expects no more. The
/// requests' bodies, in order.
async fn verify(mut handle: Handle<Request<Body>, Response<Body>>, steps: Vec<Step>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        let (request, send) = tokio::time::timeout(STEP_TIMEOUT, handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("step {i}: no request within {STEP_TIMEOUT:?}"))
            .unwrap_or_else(|| panic!("step {i}: the client went away instead"));
        let uri = request.uri().clone();
        assert_eq!(request.method(), step.method, "step {i}: {uri}");
        assert_eq!(uri.path(), step.path, "step {i}");
        let pairs: Vec<&str> = uri.query().unwrap_or_default().split('&').collect();
        for want in &step.query {
            assert!(pairs.contains(want), "step {i}: {want} not in {uri}");
        }
        for unwanted in &step.not_query {
            assert!(!pairs.contains(unwanted), "step {i}: {unwanted} in {uri}");
        }
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        seen.push(Seen { content_type, body });
        match step.reply {
            Reply::Json(status, value) => {
                let response = Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
            Reply::Unreachable => send.send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )),
        }
    }
    let more = tokio::time::timeout(STEP_TIMEOUT, handle.next_request())
        .await
        .expect("the client did not go away after the scenario");
    if let Some((request, _)) = more {
        panic!(
            "a request after the scenario: {} {}",
            request.method(),
            request.uri()
        );
    }
    seen
}

/// Runs `meshctl-canary args...` against the scenario: its output or error, and what the
/// scenario saw.
async fn run(args: &[&str], steps: Vec<Step>) -> (Result<String, Error>, Vec<Seen>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let verifier = tokio::spawn(verify(handle, steps));
    let cli =
        Cli::try_parse_from(std::iter::once("meshctl-canary").chain(args.iter().copied())).unwrap();
    let client = kube::Client::new(service, "meshmart");
    let mut out = Vec::new();
    let result = tokio::time::timeout(
        STEP_TIMEOUT * 4,
        meshctl_canary::run(&cli, &client, &mut out),
    )
    .await
    .expect("the command did not finish");
    drop(client);
    let seen = verifier.await.unwrap();
    let result = result.map(|()| String::from_utf8(out).unwrap());
    (result, seen)
}

fn destination(subset: &str, weight: u32) -> Value {
    json!({
        "destination": {
            "host": "catalog.meshmart.svc.cluster.local",
            "subset": subset,
            "port": { "number": 50051 },
        },
        "weight": weight,
    })
}

fn delegate(stable: u32, canary: u32) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "catalog-weights",
            "namespace": "meshmart",
            "labels": {
                "app.kubernetes.io/part-of": "meshmart",
                "app.kubernetes.io/component": "canary-weights",
                "app": "catalog",
            },
        },
        "spec": { "http": [{
            "name": "weights",
            "route": [destination("v1", stable), destination("v2", canary)],
        }]},
    })
}

fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply::Json(
        StatusCode::from_u16(code).unwrap(),
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }),
    )
}

fn ok(value: Value) -> Reply {
    Reply::Json(StatusCode::OK, value)
}

fn get_delegate(reply: Reply) -> Step {
    Step::new(Method::GET, DELEGATE_URL, reply)
}

fn apply_delegate(reply: Reply) -> Step {
    Step::new(Method::PATCH, DELEGATE_URL, reply).query(&["fieldManager=meshctl", "force=true"])
}

/// The weights of an applied delegate's body.
fn weights(body: &Value) -> Vec<u64> {
    body.pointer("/spec/http/0/route")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|d| d["weight"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn set_applies_the_weights_as_meshctl_forced() {
    let (result, seen) = run(
        &["set", "catalog", "50"],
        vec![
            get_delegate(ok(delegate(90, 10))),
            apply_delegate(ok(delegate(50, 50))).not_query(&["dryRun=All"]),
        ],
    )
    .await;
    let out = result.unwrap();
    assert!(out.contains("catalog: v1 90 -> 50, v2 10 -> 50"), "{out}");
    assert!(
        out.contains("applied VirtualService meshmart/catalog-weights"),
        "{out}"
    );
    let apply = &seen[1];
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(weights(&apply.body), [50, 50]);
    assert_eq!(
        apply.body["metadata"],
        json!({
            "name": "catalog-weights",
            "namespace": "meshmart",
            "annotations": { "meshmart.dev/weights-owner": "meshctl" },
        }),
        "only the name, namespace and meshctl's annotation: the labels stay the chart's"
    );
    assert_eq!(apply.body["kind"], "VirtualService");
    assert_eq!(apply.body["apiVersion"], "networking.istio.io/v1");
    // The destinations are the live ones: host, subset and port kept.
    assert_eq!(
        apply.body.pointer("/spec/http/0/route/1/destination"),
        delegate(0, 0).pointer("/spec/http/0/route/1/destination")
    );
}

#[tokio::test]
async fn promote_is_all_to_the_canary_and_rollback_all_to_stable() {
    let (result, seen) = run(
        &["promote", "catalog"],
        vec![
            get_delegate(ok(delegate(90, 10))),
            apply_delegate(ok(delegate(0, 100))),
        ],
    )
    .await;
    assert!(result.unwrap().contains("v1 90 -> 0, v2 10 -> 100"));
    assert_eq!(weights(&seen[1].body), [0, 100]);

    let (result, seen) = run(
        &["rollback", "catalog"],
        vec![
            get_delegate(ok(delegate(0, 100))),
            apply_delegate(ok(delegate(100, 0))),
        ],
    )
    .await;
    assert!(result.unwrap().contains("v1 0 -> 100, v2 100 -> 0"));
    assert_eq!(weights(&seen[1].body), [100, 0]);
}

#[tokio::test]
async fn a_dry_run_is_sent_with_dry_run_all_and_prints_the_object() {
    let (result, seen) = run(
        &["set", "catalog", "30", "--dry-run"],
        vec![
            get_delegate(ok(delegate(90, 10))),
            apply_delegate(ok(delegate(70, 30))).query(&["dryRun=All"]),
        ],
    )
    .await;
    let out = result.unwrap();
    assert!(out.contains("catalog: v1 90 -> 70, v2 10 -> 30"), "{out}");
    assert!(
        out.contains("\"meshmart.dev/weights-owner\": \"meshctl\""),
        "{out}"
    );
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(weights(&seen[1].body), [70, 30]);
}

#[tokio::test]
async fn a_service_without_a_delegate_has_no_canary() {
    let (result, _) = run(
        &["set", "catalog", "50"],
        vec![get_delegate(status(
            404,
            "NotFound",
            "virtualservices.networking.istio.io \"catalog-weights\" not found",
        ))],
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "catalog has no canary in namespace meshmart (no VirtualService catalog-weights; \
         set services.catalog.canary.enabled)"
    );
    assert_eq!(error.exit_code(), 1);
}

#[tokio::test]
async fn a_forbidden_read_names_what_failed() {
    let (result, _) = run(
        &["promote", "catalog"],
        vec![get_delegate(status(
            403,
            "Forbidden",
            "virtualservices.networking.istio.io \"catalog-weights\" is forbidden: User \"dev\" \
             cannot get resource \"virtualservices\"",
        ))],
    )
    .await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "get VirtualService meshmart/catalog-weights: forbidden (HTTP 403): \
             virtualservices.networking.istio.io"
        ),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(error.exit_code(), 3);
}

#[tokio::test]
async fn a_conflicting_apply_names_what_failed() {
    let (result, _) = run(
        &["set", "catalog", "50"],
        vec![
            get_delegate(ok(delegate(90, 10))),
            apply_delegate(status(409, "Conflict", "Apply failed with 1 conflict")),
        ],
    )
    .await;
    let text = result.unwrap_err().to_string();
    assert_eq!(
        text,
        "apply VirtualService meshmart/catalog-weights: conflict (HTTP 409): \
         Apply failed with 1 conflict"
    );
}

#[tokio::test]
async fn a_failing_api_server_names_what_failed() {
    let (result, _) = run(
        &["set", "catalog", "50"],
        vec![get_delegate(status(
            503,
            "ServiceUnavailable",
            "etcd is down",
        ))],
    )
    .await;
    let text = result.unwrap_err().to_string();
    assert_eq!(
        text,
        "get VirtualService meshmart/catalog-weights: the API server failed (HTTP 503): etcd is down"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_one_line() {
    let (result, _) = run(
        &["status", "catalog"],
        vec![Step::new(
            Method::GET,
            VIRTUAL_SERVICES_URL,
            Reply::Unreachable,
        )],
    )
    .await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "list VirtualServices in meshmart: the API server is unreachable: connection refused"
        ),
        "{text}"
    );
    assert_eq!(error.exit_code(), 3);
}

#[tokio::test]
async fn a_delegate_without_two_destinations_is_not_changed() {
    let mut one = delegate(100, 0);
    one["spec"]["http"][0]["route"] = json!([destination("v1", 100)]);
    let (result, _) = run(&["set", "catalog", "50"], vec![get_delegate(ok(one))]).await;
    let error = result.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected two destinations (the stable version, then the canary), found 1"),
        "{error}"
    );
    assert_eq!(error.exit_code(), 1);
}

fn deployment(version: &str, replicas: i32, ready: Option<i32>) -> Value {
    let mut status = json!({ "replicas": replicas });
    if let Some(ready) = ready {
        status["readyReplicas"] = json!(ready);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": format!("catalog-{version}"),
            "namespace": "meshmart",
            "labels": { "app": "catalog", "version": version },
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "catalog", "version": version } },
            "template": {
                "metadata": { "labels": { "app": "catalog", "version": version } },
                "spec": { "containers": [{ "name": "catalog", "image": "catalog" }] },
            },
        },
        "status": status,
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Reply {
    ok(json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "resourceVersion": "1" },
        "items": items,
    }))
}

/// The mesh VirtualService as the chart renders it with the delegate: a pinned route, and
/// a route that delegates.
fn mesh_virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": "catalog", "namespace": "meshmart" },
        "spec": {
            "hosts": ["catalog.meshmart.svc.cluster.local"],
            "gateways": ["mesh"],
            "http": [
                {
                    "name": "catalog-reads-v2-pinned",
                    "match": [{ "headers": { "x-meshmart-canary": { "exact": "v2" } } }],
                    "route": [{ "destination": {
                        "host": "catalog.meshmart.svc.cluster.local",
                        "subset": "v2",
                        "port": { "number": 50051 },
                    }}],
                },
                {
                    "name": "catalog-reads",
                    "delegate": { "name": "catalog-weights", "namespace": "meshmart" },
                    "timeout": "3s",
                },
            ],
        },
    })
}

fn status_steps() -> Vec<Step> {
    vec![
        Step::new(
            Method::GET,
            VIRTUAL_SERVICES_URL,
            list(
                "VirtualServiceList",
                "networking.istio.io/v1",
                vec![delegate(90, 10), mesh_virtual_service()],
            ),
        ),
        Step::new(
            Method::GET,
            DEPLOYMENTS_URL,
            list(
                "DeploymentList",
                "apps/v1",
                vec![deployment("v1", 2, Some(2))],
            ),
        )
        .query(&["labelSelector=app%3Dcatalog%2Cversion%3Dv1"]),
        Step::new(
            Method::GET,
            DEPLOYMENTS_URL,
            list("DeploymentList", "apps/v1", vec![deployment("v2", 1, None)]),
        )
        .query(&["labelSelector=app%3Dcatalog%2Cversion%3Dv2"]),
    ]
}

#[tokio::test]
async fn status_shows_the_weights_per_route_and_the_replicas() {
    let (result, _) = run(&["status"], status_steps()).await;
    let out = result.unwrap();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(lines.contains(&vec!["v1", "stable", "90%", "2/2"]), "{out}");
    // No readyReplicas yet: none ready.
    assert!(lines.contains(&vec!["v2", "canary", "10%", "0/1"]), "{out}");
    assert!(
        lines.contains(&vec![
            "catalog",
            "catalog-reads-v2-pinned",
            "route",
            "v2",
            "100%"
        ]),
        "{out}"
    );
    assert!(
        lines.contains(&vec![
            "catalog",
            "catalog-reads",
            "delegate",
            "v1",
            "90%,",
            "v2",
            "10%"
        ]),
        "{out}"
    );
}

#[tokio::test]
async fn status_as_json() {
    let (result, _) = run(&["status", "catalog", "-o", "json"], status_steps()).await;
    let status: Value = serde_json::from_str(&result.unwrap()).unwrap();
    let catalog = &status["services"][0];
    assert_eq!(catalog["service"], "catalog");
    assert_eq!(catalog["weightsOwner"], Value::Null);
    assert_eq!(
        catalog["versions"][1],
        json!({
            "version": "v2",
            "role": "canary",
            "weight": 10,
            "deployments": 1,
            "readyReplicas": 0,
            "replicas": 1,
        })
    );
    assert_eq!(
        catalog["routes"][1],
        json!({
            "virtualService": "catalog",
            "route": "catalog-reads",
            "via": "delegate",
            "weights": { "v1": 90, "v2": 10 },
        })
    );
}

#[tokio::test]
async fn status_of_a_service_without_a_canary() {
    let (result, _) = run(
        &["status", "orders"],
        vec![Step::new(
            Method::GET,
            VIRTUAL_SERVICES_URL,
            list(
                "VirtualServiceList",
                "networking.istio.io/v1",
                vec![delegate(90, 10)],
            ),
        )],
    )
    .await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .starts_with("orders has no canary in namespace meshmart")
    );
}
