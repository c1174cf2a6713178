//! The edge: the ingress gateway's JWT rules and rate limit, and an order placed through
//! it that goes all the way, every hop through a sidecar.

use std::sync::Arc;
use std::time::Duration;

use kube_harness::mesh::{Program, Shop};
use meshmart::proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use meshmart::proto::orders::{
    self, CreateOrderRequest, GetOrderRequest, OrderLine, ShippingAddress,
    order_service_client::OrderServiceClient,
};
use tonic::Code;

use super::support::{Test, TestFuture, authorized, code, counter, edge, ensure, fail, token};

pub(crate) const TESTS: &[(&str, Test)] = &[
    ("edge_requires_a_valid_token", requires_a_valid_token),
    ("edge_rate_limit_answers_resource_exhausted", rate_limit),
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
