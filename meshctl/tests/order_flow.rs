//! Black-box: the order flow in a real `meshctl up`, every service its own process, on the
//! embedded database files and event log. What must survive a process dying: a consumer
//! killed with SIGKILL in the middle of its work, and orders killed between its commit and
//! the publish of its events (a crash point of the `fault-injection` feature, which the test
//! build has and release builds leave out). And one trace per order across all seven.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A synchronous black-box test: blocking waits and wall-clock deadlines are what it needs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::time::Duration;

use meshmart::proto::{
    orders::{
        self, CreateOrderRequest, GetOrderRequest, OrderLine, ShippingAddress,
        order_service_client::OrderServiceClient,
    },
    payments::{ListChargesRequest, payment_service_client::PaymentServiceClient},
};
use nix::sys::signal::Signal;
use support::shop::Shop;
use tonic::{Request, transport::Channel};

const CUSTOMER: &str = "grace";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn channel(shop: &Shop, service: &str) -> Channel {
    Channel::from_shared(format!("http://{}", shop.grpc_addr(service)))
        .unwrap()
        .connect_lazy()
}

fn as_customer<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        meshmart::customer::CUSTOMER_HEADER,
        CUSTOMER.parse().unwrap(),
    );
    request
}

fn order(request_id: &str, card: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        request_id: request_id.to_owned(),
        lines: vec![OrderLine {
            product_id: "ceramic-dripper".to_owned(),
            quantity: 1,
            unit_price: None,
        }],
        payment_token: card.to_owned(),
        shipping_address: Some(ShippingAddress {
            recipient: "Grace Hopper".to_owned(),
            address_lines: vec!["1 Navy Yard".to_owned()],
            locality: "Arlington".to_owned(),
            postal_code: "22202".to_owned(),
            region_code: "US".to_owned(),
        }),
    }
}

/// Polls `name` until it is COMPLETED or FAILED, within 90 s: long enough for a restart's
/// backoff and a redelivery after `ack_wait`.
async fn settled(orders: &mut OrderServiceClient<Channel>, name: &str) -> orders::Order {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let reply = orders
            .get_order(as_customer(GetOrderRequest {
                name: name.to_owned(),
            }))
            .await;
        if let Ok(reply) = reply {
            let order = reply.into_inner().order.unwrap();
            if matches!(
                order.state(),
                orders::State::Completed | orders::State::Failed
            ) {
                return order;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not settle in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn charges(payments: &mut PaymentServiceClient<Channel>, order_id: &str) -> usize {
    payments
        .list_charges(ListChargesRequest {
            order_id: order_id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .charges
        .len()
}

#[test]
fn a_consumer_killed_in_the_middle_of_its_work_loses_nothing_and_charges_nothing_twice() {
    let mut shop = Shop::start(&[]);
    let rt = runtime();
    // Lazy channels need the runtime around them from the start.
    let _runtime = rt.enter();
    let mut orders = OrderServiceClient::new(channel(&shop, "orders"));
    let mut payments = PaymentServiceClient::new(channel(&shop, "payments"));

    // Flaky cards keep payments busy across redeliveries: there is work in hand to cut.
    let names: Vec<String> = rt.block_on(async {
        let mut names = Vec::new();
        for n in 0..12 {
            let card = if n % 2 == 0 {
                "tok_visa_flaky"
            } else {
                "tok_visa_approved"
            };
            let placed = orders
                .create_order(as_customer(order(&format!("kill-{n}"), card)))
                .await
                .unwrap();
            names.push(placed.into_inner().order.unwrap().name);
        }
        names
    });
    let old = shop.pid_of("payments");
    shop.signal_child("payments", Signal::SIGKILL);
    shop.wait_for_restart("payments", old);

    rt.block_on(async {
        for name in &names {
            let order = settled(&mut orders, name).await;
            assert_eq!(order.state(), orders::State::Completed, "{order:?}");
            let id = name.strip_prefix("orders/").unwrap();
            assert_eq!(charges(&mut payments, id).await, 1, "{name}: one charge");
        }
    });
    shop.signal(Signal::SIGTERM);
    assert!(
        shop.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        shop.output()
    );
}

#[test]
fn orders_killed_between_its_commit_and_the_publish_publishes_once_after_the_restart() {
    let mut shop = Shop::start(&[("MESHMART_CRASH_AT", "orders.after_commit")]);
    let rt = runtime();
    // Lazy channels need the runtime around them from the start.
    let _runtime = rt.enter();
    let mut orders = OrderServiceClient::new(channel(&shop, "orders"));
    let mut payments = PaymentServiceClient::new(channel(&shop, "payments"));
    let old = shop.pid_of("orders");

    // The commit happens, then the process dies before answering.
    let died = rt.block_on(orders.create_order(as_customer(order("crash-1", "tok_visa_approved"))));
    assert!(died.is_err(), "orders answered: {died:?}");
    shop.wait_for_restart("orders", old);
    shop.wait_for_line("meshctl: orders is back", "");

    // The client retries, as the mesh would: the stored order, not a second one.
    let name = rt.block_on(async {
        let placed = orders
            .create_order(as_customer(order("crash-1", "tok_visa_approved")))
            .await
            .unwrap();
        placed.into_inner().order.unwrap().name
    });
    rt.block_on(async {
        let order = settled(&mut orders, &name).await;
        assert_eq!(order.state(), orders::State::Completed, "{order:?}");
        let id = name.strip_prefix("orders/").unwrap();
        assert_eq!(charges(&mut payments, id).await, 1);
    });
    shop.signal(Signal::SIGTERM);
    assert!(
        shop.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        shop.output()
    );
}

mod one_trace {
    use std::{
        collections::{BTreeMap, BTreeSet},
        sync::{Arc, Mutex},
    };

    use opentelemetry_proto::tonic::{
        collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
        common::v1::any_value::Value,
    };
    use tonic::{Response, Status};

    use super::*;

    /// An OTLP/gRPC collector that keeps, per trace id, the services that sent spans of it.
    #[derive(Clone, Default)]
    struct Collector {
        services_by_trace: Arc<Mutex<BTreeMap<Vec<u8>, BTreeSet<String>>>>,
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            let mut seen = self.services_by_trace.lock().unwrap();
            for resource_spans in request.into_inner().resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|resource| &resource.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(name) => Some(name.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        seen.entry(span.trace_id)
                            .or_default()
                            .insert(service.clone());
                    }
                }
            }
            Ok(Response::new(ExportTraceServiceResponse::default()))
        }
    }

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn every_service_exports_its_spans_of_one_order_under_one_trace_id() {
        let rt = runtime();
        let _runtime = rt.enter();
        // Lazy channels need the runtime around them from the start.
        let _runtime = rt.enter();
        let collector = Collector::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let mut shop = Shop::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
        let mut orders = OrderServiceClient::new(channel(&shop, "orders"));

        rt.block_on(async {
            let mut request = as_customer(order("traced-1", "tok_visa_approved"));
            request.metadata_mut().insert(
                "traceparent",
                format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
                    .parse()
                    .unwrap(),
            );
            let name = orders
                .create_order(request)
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
                .name;
            let order = settled(&mut orders, &name).await;
            assert_eq!(order.state(), orders::State::Completed);
        });

        let trace_id: Vec<u8> = (0..TRACE_ID.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&TRACE_ID[i..i + 2], 16).unwrap())
            .collect();
        let all: BTreeSet<String> = [
            "catalog",
            "inventory",
            "orders",
            "payments",
            "fulfillment",
            "notifications",
            "orchestrator",
        ]
        .map(str::to_owned)
        .into();
        // Spans go out in batches: wait for the last service's, within a bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let seen = collector
                .services_by_trace
                .lock()
                .unwrap()
                .get(&trace_id)
                .cloned()
                .unwrap_or_default();
            if seen == all {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "spans of the order's trace came from {seen:?}, not all of {all:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        shop.signal(Signal::SIGTERM);
        assert!(
            shop.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            shop.output()
        );
    }
}
