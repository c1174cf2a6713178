//! The edge: the ingress gateway's JWT rules and rate limit, REST/JSON beside gRPC on its
//! listener (the chart's transcoder), and an order placed through it that goes all the way,
//! every hop through a sidecar.

use std::sync::Arc;
use std::time::Duration;

use kube_harness::mesh::{NAMESPACE, Program, Shop};
use meshmart::proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use meshmart::proto::orders::{
    self, CreateOrderRequest, GetOrderRequest, OrderLine, ShippingAddress,
    order_service_client::OrderServiceClient,
};
use tonic::Code;

use super::support::{
    CALL_TIMEOUT, Test, TestFuture, authorized, code, counter, counter_sum, dechunk, edge, ensure,
    fail, token,
};

pub(crate) const TESTS: &[(&str, Test)] = &[
    ("edge_requires_a_valid_token", requires_a_valid_token),
    ("edge_rate_limit_answers_resource_exhausted", rate_limit),
    (
        "edge_rest_without_a_token_is_refused_at_the_gateway_as_json",
        rest_without_a_token,
    ),
    (
        "edge_rest_with_a_valid_token_answers_the_product_as_json",
        rest_with_a_valid_token,
    ),
    (
        "edge_rest_with_an_expired_token_is_401_json",
        rest_with_an_expired_token,
    ),
    (
        "edge_rest_malformed_json_body_is_400_invalid_argument",
        rest_malformed_body,
    ),
    ("edge_rest_serves_the_openapi_without_a_token", rest_openapi),
    (
        "order_through_the_gateway_completes_every_hop_through_sidecars",
        order_completes,
    ),
];

/// A product of the demo catalogue (meshmart::demo), which the services seed.
pub(crate) const PRODUCT: &str = "products/burr-grinder";

fn get_product(token: Option<&str>) -> tonic::Request<GetProductRequest> {
    authorized(
        GetProductRequest {
            name: PRODUCT.to_owned(),
        },
        token,
    )
}

/// No token: PERMISSION_DENIED (the gateway's DENY policy for calls without a request
/// principal); an expired one, or one from another issuer: UNAUTHENTICATED (the JWT
/// filter); a valid one: the product, with its stock from inventory, and server reflection
/// (which the edge routes to catalog).
fn requires_a_valid_token(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let mut catalog = CatalogServiceClient::new(edge(&shop).await?);
        let expired = token(&["--expired"])?;
        let other = token(&["--issuer", "https://issuer.other.example/"])?;
        let valid = token(&[])?;
        for (what, token, want) in [
            ("no token", None, Code::PermissionDenied),
            (
                "an expired token",
                Some(expired.as_str()),
                Code::Unauthenticated,
            ),
            (
                "another issuer's token",
                Some(other.as_str()),
                Code::Unauthenticated,
            ),
        ] {
            let got = code(&catalog.get_product(get_product(token)).await);
            ensure(got == want, || {
                format!("GetProduct with {what}: {got:?}, not {want:?}")
            })?;
        }
        let product = catalog
            .get_product(get_product(Some(&valid)))
            .await
            .map_err(fail("GetProduct with a valid token"))?
            .into_inner()
            .product
            .ok_or("GetProduct answered no product")?;
        ensure(product.name == PRODUCT, || {
            format!("GetProduct answered {product:?}")
        })?;
        ensure(product.available_quantity > 0, || {
            format!("GetProduct's product has no stock from inventory: {product:?}")
        })?;
        // Server reflection through the edge (routed to catalog, as `grpcurl ... list`
        // needs it), behind the same token.
        let listed = reflection_list(&shop, Some(&valid)).await?;
        ensure(
            listed.contains("meshmart.catalog.v1.CatalogService"),
            || format!("grpcurl list through the gateway with a token: {listed}"),
        )?;
        let refused = reflection_list(&shop, None).await;
        ensure(refused.is_err(), || {
            format!("grpcurl list through the gateway without a token answered: {refused:?}")
        })
    })
}

/// `grpcurl -plaintext [-H authorization] <gateway> list`, as docs/deploy.md has users run
/// it: the services it lists, or its error.
async fn reflection_list(shop: &Shop, token: Option<&str>) -> Result<String, String> {
    let grpcurl = shop.cluster().tool("grpcurl");
    let gateway = shop.gateway().trim_start_matches("http://").to_owned();
    let mut command = tokio::process::Command::new(grpcurl);
    command.args(["-plaintext", "-max-time=10"]);
    if let Some(token) = token {
        command.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    let out = command
        .args([gateway.as_str(), "list"])
        .output()
        .await
        .map_err(fail("run grpcurl"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A burst beyond the gateway's bucket (100 tokens, 50 a second): the calls beyond it are
/// answered RESOURCE_EXHAUSTED, the rest succeed, nothing else.
fn rate_limit(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        const BURST: usize = 300;
        let catalog = CatalogServiceClient::new(edge(&shop).await?);
        let valid = token(&[])?;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            let mut catalog = catalog.clone();
            let request = get_product(Some(&valid));
            calls.spawn(async move { code(&catalog.get_product(request).await) });
        }
        let codes: Vec<Code> = calls.join_all().await;
        let ok = codes.iter().filter(|c| **c == Code::Ok).count();
        let limited = codes
            .iter()
            .filter(|c| **c == Code::ResourceExhausted)
            .count();
        // Let the bucket fill again for the next test.
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure(ok + limited == BURST, || {
            format!("{BURST} calls at once: {ok} ok, {limited} limited, and others: {codes:?}")
        })?;
        ensure(limited > 0 && ok >= 100, || {
            format!("{BURST} calls at once: {ok} ok and {limited} RESOURCE_EXHAUSTED")
        })
    })
}

/// One HTTP/1.1 answer: status, headers (names lower-cased) and body (de-chunked).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v.as_str()))
    }

    /// The body as JSON, or why it is not.
    fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("a body that is not JSON ({e}): {:?}", self.body))
    }

    /// Whether this is a google.rpc.Status in JSON with `code`, at HTTP `status`.
    fn is_status(&self, status: u16, code: i64) -> bool {
        self.status == status
            && self.header("content-type") == Some("application/json")
            && self.json().is_ok_and(|b| b["code"].as_i64() == Some(code))
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The OpenAPI is 32 KiB: its head is enough to see what answered.
        let body: String = self.body.chars().take(300).collect();
        write!(f, "{} {:?} {body:?}", self.status, self.headers)
    }
}

/// `method path` to the gateway over plain HTTP/1.1, as curl would send it: one request
/// per connection, with `authorization: Bearer <token>` when given and `body` as JSON. No
/// HTTP client in the harness: Envoy's answers here are small and simple (a length or
/// chunks, then close), so a request written by hand is enough.
async fn rest(
    shop: &Shop,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Answer, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = shop.gateway().trim_start_matches("http://").to_owned();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(fail("connect to the gateway"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(fail("write to the gateway"))?;
    let mut raw = Vec::new();
    tokio::time::timeout(CALL_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .map_err(fail("the gateway's answer"))?
        .map_err(fail("read the gateway's answer"))?;
    let text = String::from_utf8(raw).map_err(fail("the gateway's answer as UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("the gateway answered no HTTP: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("the gateway answered no status line: {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The REST path of [`PRODUCT`] (its google.api.http route).
const PRODUCT_PATH: &str = "/v1/products/burr-grinder";

/// The calls the gateway has sent to catalog, at any subset.
async fn calls_to_catalog(shop: &Shop) -> Result<u64, String> {
    let gateway = shop
        .workloads()
        .iter()
        .find(|w| w.app() == "meshmart-gateway")
        .ok_or("no gateway workload")?
        .name
        .clone();
    counter_sum(
        shop,
        &gateway,
        &format!("|catalog.{NAMESPACE}.svc.cluster.local.upstream_rq_total"),
    )
    .await
}

/// A REST call without a token is a gRPC call without one once the transcoder (the
/// gateway's first filter) has run, so the same DENY policy refuses it: 403 with
/// PERMISSION_DENIED as google.rpc.Status JSON, and catalog never sees it.
fn rest_without_a_token(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let before = calls_to_catalog(&shop).await?;
        let answer = rest(&shop, "GET", PRODUCT_PATH, None, None).await?;
        ensure(answer.is_status(403, 7), || {
            format!("GET {PRODUCT_PATH} without a token: {answer:?}, not 403 JSON with code 7")
        })?;
        let message = answer.json()?["message"].as_str().unwrap_or("").to_owned();
        ensure(message.contains("RBAC"), || {
            format!("GET {PRODUCT_PATH} without a token was refused by something else: {answer:?}")
        })?;
        let after = calls_to_catalog(&shop).await?;
        ensure(after == before, || {
            format!(
                "the gateway called catalog for a call it refused ({before} calls, then {after})"
            )
        })
    })
}

/// With a valid token: the product as JSON (proto3's JSON mapping: camelCase names, int64
/// as a string), with its stock from inventory, as the gRPC call answers it.
fn rest_with_a_valid_token(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let valid = token(&[])?;
        let answer = rest(&shop, "GET", PRODUCT_PATH, Some(&valid), None).await?;
        ensure(
            answer.status == 200 && answer.header("content-type") == Some("application/json"),
            || format!("GET {PRODUCT_PATH} with a valid token: {answer:?}"),
        )?;
        let product = &answer.json()?["product"];
        ensure(product["name"] == PRODUCT, || {
            format!("GET {PRODUCT_PATH} answered another product: {answer:?}")
        })?;
        let stock = product["availableQuantity"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        ensure(stock > 0, || {
            format!("GET {PRODUCT_PATH}'s product has no stock from inventory: {answer:?}")
        })
    })
}

/// An expired token: the JWT filter refuses the transcoded call, 401 UNAUTHENTICATED as
/// google.rpc.Status JSON (files/edge/local-reply.json).
fn rest_with_an_expired_token(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let expired = token(&["--expired"])?;
        let answer = rest(&shop, "GET", PRODUCT_PATH, Some(&expired), None).await?;
        ensure(answer.is_status(401, 16), || {
            format!(
                "GET {PRODUCT_PATH} with an expired token: {answer:?}, not 401 JSON with code 16"
            )
        })
    })
}

/// A body that is not JSON, with a valid token: the transcoder cannot make a CreateOrder of
/// it and answers itself, 400 INVALID_ARGUMENT as JSON.
fn rest_malformed_body(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let valid = token(&["--sub", "mesh-rest-customer"])?;
        let answer = rest(&shop, "POST", "/v1/orders", Some(&valid), Some("{not json")).await?;
        ensure(answer.is_status(400, 3), || {
            format!("POST /v1/orders with a malformed body: {answer:?}, not 400 JSON with code 3")
        })
    })
}

/// The OpenAPI, public: without a token, the committed file byte for byte, as YAML.
fn rest_openapi(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let path = kube_harness::repo_root().join("helm/meshmart/files/edge/openapi.yaml");
        let committed = std::fs::read_to_string(&path).map_err(fail("read the OpenAPI"))?;
        let answer = rest(&shop, "GET", "/openapi.yaml", None, None).await?;
        ensure(
            answer.status == 200 && answer.header("content-type") == Some("application/yaml"),
            || format!("GET /openapi.yaml without a token: {answer:?}"),
        )?;
        ensure(answer.body == committed, || {
            format!(
                "GET /openapi.yaml answered {} bytes that are not the committed {} bytes",
                answer.body.len(),
                committed.len()
            )
        })
    })
}

/// An order of one burr grinder, paid with the test card that is approved.
pub(crate) fn order_request(request_id: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        request_id: request_id.to_owned(),
        lines: vec![OrderLine {
            product_id: "burr-grinder".to_owned(),
            quantity: 1,
            unit_price: None,
        }],
        payment_token: "tok_visa_approved".to_owned(),
        shipping_address: Some(ShippingAddress {
            recipient: "Ada Lovelace".to_owned(),
            address_lines: vec!["12 St James's Square".to_owned()],
            locality: "London".to_owned(),
            postal_code: "SW1Y 4LE".to_owned(),
            region_code: "GB".to_owned(),
        }),
    }
}

/// CreateOrder of [`order_request`] through the gateway as the token's customer. The
/// call's own outcome is the inner result.
pub(crate) async fn create_order(
    orders: &mut OrderServiceClient<tonic::transport::Channel>,
    token: &str,
    request_id: &str,
) -> Result<Result<orders::Order, tonic::Status>, String> {
    let request = authorized(order_request(request_id), Some(token));
    Ok(orders
        .create_order(request)
        .await
        .map(|r| r.into_inner().order)
        .and_then(|o| o.ok_or_else(|| tonic::Status::internal("CreateOrder answered no order"))))
}

/// Asks for the order `name` through the gateway until it is COMPLETED or FAILED (at most
/// a minute); its state then.
pub(crate) async fn settle(
    orders: &mut OrderServiceClient<tonic::transport::Channel>,
    token: &str,
    name: &str,
) -> Result<orders::State, String> {
    let mut state = orders::State::Unspecified;
    for _ in 0..120 {
        let got = orders
            .get_order(authorized(
                GetOrderRequest {
                    name: name.to_owned(),
                },
                Some(token),
            ))
            .await
            .map_err(fail("GetOrder through the gateway"))?
            .into_inner()
            .order
            .ok_or("GetOrder answered no order")?;
        state = got.state();
        if matches!(state, orders::State::Completed | orders::State::Failed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(state)
}

/// The order flow's gRPC hops (caller, callee, method, port) that are not in the access
/// logs of the proxies at both ends: outbound at the caller, inbound at the callee.
fn missing_hops(shop: &Shop) -> Vec<String> {
    let log_of = |app: &str| -> String {
        shop.workloads()
            .iter()
            .filter(|w| w.app() == app)
            .map(|w| std::fs::read_to_string(&w.proxy_log).unwrap_or_default())
            .collect()
    };
    let mut missing = Vec::new();
    for (caller, callee, method, port) in [
        (
            "meshmart-gateway",
            "orders",
            "OrderService/CreateOrder",
            50053,
        ),
        ("orders", "catalog", "CatalogService/", 50051),
        (
            "orders",
            "inventory",
            "InventoryService/ReserveStock",
            50052,
        ),
        (
            "catalog",
            "inventory",
            "InventoryService/BatchGetStock",
            50052,
        ),
        (
            "orchestrator",
            "inventory",
            "InventoryService/CommitReservation",
            50052,
        ),
    ] {
        // outbound|<port>|<subset>|<host>: the DestinationRules' subsets name v1 and v2.
        let outbound = format!("outbound|{port}|");
        let host = format!("|{callee}.meshmart.svc.cluster.local");
        let inbound = format!("inbound|{port}||");
        if !log_of(caller)
            .lines()
            .any(|l| l.contains(method) && l.contains(&outbound) && l.contains(&host))
        {
            missing.push(format!(
                "{caller} -> {callee} {method}: not at {caller}'s proxy"
            ));
        }
        if !log_of(callee)
            .lines()
            .any(|l| l.contains(method) && l.contains(&inbound))
        {
            missing.push(format!(
                "{caller} -> {callee} {method}: not at {callee}'s proxy"
            ));
        }
    }
    missing
}

/// An order placed through the gateway reaches COMPLETED; on the way, each gRPC hop shows
/// in the access logs of the proxies at both ends, and each connection to PostgreSQL and
/// NATS went out through the caller's sidecar and in through the server's.
fn order_completes(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let valid = token(&["--sub", "mesh-customer"])?;
        let mut orders = OrderServiceClient::new(edge(&shop).await?);
        let order = create_order(&mut orders, &valid, "mesh-order-1")
            .await?
            .map_err(fail("CreateOrder through the gateway"))?;
        let state = settle(&mut orders, &valid, &order.name).await?;
        ensure(state == orders::State::Completed, || {
            format!("{} ended {state:?}, not COMPLETED", order.name)
        })?;

        // The gRPC hops, in the access logs at both ends (outbound at the caller, inbound
        // at the callee). Envoy writes its access log out every few seconds: wait for it.
        let mut missing = Vec::new();
        for _ in 0..30 {
            missing = missing_hops(&shop);
            if missing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ensure(missing.is_empty(), || {
            format!("hops of the order missing from the proxies' access logs: {missing:#?}")
        })?;
        // The TCP hops: connections counted by each side's proxy (a TCP connection is
        // logged only when it closes).
        for server in ["postgres", "nats"] {
            let port = if server == "postgres" { 5432 } else { 4222 };
            let inbound = counter(
                &shop,
                server,
                &format!("cluster.inbound|{port}||.upstream_cx_total"),
            )
            .await?;
            ensure(inbound > 0, || {
                format!("{server}'s proxy took no connection in")
            })?;
            for w in shop
                .workloads()
                .iter()
                .filter(|w| w.program == Program::Service)
            {
                let uses = if server == "postgres" {
                    true
                } else {
                    !matches!(w.app(), "catalog" | "inventory")
                };
                if !uses {
                    continue;
                }
                let out = counter(
                    &shop,
                    &w.name,
                    &format!(
                        "cluster.outbound|{port}||{server}.meshmart.svc.cluster.local.upstream_cx_total"
                    ),
                )
                .await?;
                ensure(out > 0, || {
                    format!(
                        "{} reached {server} through no connection of its sidecar",
                        w.name
                    )
                })?;
            }
        }
        Ok::<(), String>(())
    })
}
