//! One trace: an order placed through the gateway with a W3C `traceparent` is one trace at
//! the harness's collector, with spans from the gateway, the sidecars and every service
//! the order went through (the event consumers too: the trace context rides on the
//! events' headers).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube_harness::mesh::Shop;
use meshmart::proto::orders::{self, order_service_client::OrderServiceClient};

use super::edge::{order_request, settle};
use super::support::{Test, TestFuture, authorized, edge, ensure, fail, token};

pub(crate) const TESTS: &[(&str, Test)] = &[(
    "one_trace_id_from_the_gateway_through_the_sidecars_and_the_services",
    one_trace,
)];

/// The trace the test starts (as a client would, in `traceparent`).
const TRACE_ID: &str = "5c0b4a3f8e1d2c7b9a6f4e3d2c1b0a99";

/// The services' own spans (OTEL_SERVICE_NAME, the chart's), and their proxies' (Istio
/// names a proxy's spans `<app>.<namespace>`).
const SERVICES: &[&str] = &[
    "orders",
    "catalog",
    "inventory",
    "payments",
    "fulfillment",
    "notifications",
    "orchestrator",
];
const PROXIES: &[&str] = &[
    "meshmart-gateway.meshmart",
    "orders.meshmart",
    "catalog.meshmart",
    "inventory.meshmart",
];

fn one_trace(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let customer = token(&["--sub", "traced-customer"])?;
        let mut orders = OrderServiceClient::new(edge(&shop).await?);
        let mut request = authorized(order_request("traced-1"), Some(&customer));
        let parent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .map_err(fail("traceparent"))?;
        request.metadata_mut().insert("traceparent", parent);
        let order = orders
            .create_order(request)
            .await
            .map_err(fail("CreateOrder through the gateway"))?
            .into_inner()
            .order
            .ok_or("CreateOrder answered no order")?;
        let state = settle(&mut orders, &customer, &order.name).await?;
        ensure(state == orders::State::Completed, || {
            format!("{} ended {state:?}", order.name)
        })?;
        // Spans arrive in batches (the services' exporters, Envoy's tracer): wait for them.
        let want: BTreeSet<&str> = SERVICES.iter().chain(PROXIES).copied().collect();
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            seen = shop
                .spans()
                .await
                .into_iter()
                .filter(|s| s.trace_id == TRACE_ID)
                .map(|s| s.service)
                .collect::<BTreeSet<String>>();
            if want.iter().all(|w| seen.contains(*w)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let others: BTreeSet<String> = shop.spans().await.into_iter().map(|s| s.service).collect();
        Err(format!(
            "trace {TRACE_ID} has spans from {seen:?}, not from all of {want:?} (every span's \
             service: {others:?})"
        ))
    })
}
