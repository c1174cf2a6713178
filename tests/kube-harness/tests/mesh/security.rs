//! STRICT mTLS, the workloads' identities and the chart's AuthorizationPolicies, as a
//! workload inside the mesh meets them.

use std::sync::Arc;
use std::time::Duration;

use kube_harness::mesh::{Program, Shop};
use meshmart::proto::catalog::{ListProductsRequest, catalog_service_client::CatalogServiceClient};
use meshmart::proto::inventory::{
    GetStockRequest, inventory_service_client::InventoryServiceClient,
};
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::support::{
    CALL_TIMEOUT, NAMESPACE, Test, TestFuture, code, ensure, envoy_admin, fail, inside,
    through_sidecar,
};

pub(crate) const TESTS: &[(&str, Test)] = &[
    (
        "strict_mtls_refuses_plaintext_inside_the_mesh",
        plaintext_refused,
    ),
    (
        "certificates_carry_each_service_accounts_spiffe_identity",
        identities,
    ),
    (
        "policies_deny_unlisted_callers_on_every_edge",
        unlisted_denied,
    ),
    (
        "policies_let_listed_callers_through_and_only_where_listed",
        listed_pass,
    ),
];

/// Each service's gRPC port and health service name.
const SERVICES: &[(&str, u16, &str)] = &[
    ("catalog", 50051, "meshmart.catalog.v1.CatalogService"),
    ("inventory", 50052, "meshmart.inventory.v1.InventoryService"),
    ("orders", 50053, "meshmart.orders.v1.OrderService"),
    ("payments", 50054, "meshmart.payments.v1.PaymentService"),
    (
        "fulfillment",
        50055,
        "meshmart.fulfillment.v1.FulfillmentService",
    ),
    (
        "notifications",
        50056,
        "meshmart.notifications.v1.NotificationService",
    ),
    (
        "orchestrator",
        50057,
        "meshmart.orchestrator.v1.OrchestratorService",
    ),
];

fn health(service: &str) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// A plaintext gRPC call from inside the mesh's network, straight to a service's inbound
/// listener (not through the caller's sidecar), gets no answer: under STRICT the listener
/// has only the mesh's TLS filter chain.
fn plaintext_refused(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        for target in shop
            .workloads()
            .iter()
            .filter(|w| w.program == Program::Service)
        {
            let port = target.grpc_port().ok_or("a service without a grpc port")?;
            let address = format!("http://{}:{port}", target.netns.ip);
            let name = target.name.clone();
            let outcome = inside(&shop, "client-intruder", move || async move {
                let channel = Endpoint::from_shared(address)
                    .map_err(fail("address"))?
                    .connect_timeout(Duration::from_secs(5))
                    .connect_lazy();
                let got = HealthClient::new(channel).check(health("")).await;
                Ok(got
                    .map(|r| r.into_inner().status)
                    .map_err(|s| s.to_string()))
            })
            .await?;
            ensure(outcome.is_err(), || {
                format!("a plaintext call to {name}'s inbound listener was answered: {outcome:?}")
            })?;
        }
        Ok(())
    })
}

/// Each proxy's workload certificate (from Envoy's `/certs`) names its service account's
/// SPIFFE identity, and no other.
fn identities(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        for w in shop.workloads() {
            let certs = envoy_admin(&shop, &w.name, "/certs").await?;
            let json: serde_json::Value =
                serde_json::from_str(&certs).map_err(fail(&format!("{}'s /certs", w.name)))?;
            let mut uris: Vec<String> = json["certificates"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
                .flat_map(|c| c["subject_alt_names"].as_array().into_iter().flatten())
                .filter_map(|san| san["uri"].as_str().map(str::to_owned))
                .collect();
            uris.sort();
            uris.dedup();
            let want = format!(
                "spiffe://cluster.local/ns/{NAMESPACE}/sa/{}",
                w.service_account
            );
            ensure(uris == [want.clone()], || {
                format!("{}'s certificates name {uris:?}, not [{want}]", w.name)
            })?;
        }
        Ok(())
    })
}

/// A workload whose service account no policy names is denied on every service (the
/// namespace's deny-by-default), health included: the kubelet's probes reach the services
/// through pilot-agent's probe rewrite, never through the mesh; and on the TCP edges to
/// PostgreSQL and NATS its connection is closed unanswered.
fn unlisted_denied(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let codes = inside(&shop, "client-intruder", || async {
            let mut codes = Vec::new();
            for (service, port, grpc) in SERVICES {
                let channel = through_sidecar(service, *port).await?;
                let got = HealthClient::new(channel).check(health(grpc)).await;
                codes.push((*service, code(&got)));
            }
            let channel = through_sidecar("catalog", 50051).await?;
            let got = CatalogServiceClient::new(channel)
                .list_products(tonic::Request::new(ListProductsRequest {
                    page_size: 1,
                    ..Default::default()
                }))
                .await;
            codes.push(("catalog ListProducts", code(&got)));
            Ok(codes)
        })
        .await?;
        for (what, got) in &codes {
            ensure(*got == Code::PermissionDenied, || {
                format!("the intruder's call to {what}: {got:?}, not PermissionDenied")
            })?;
        }
        // The TCP edges: a client's first bytes (NATS's CONNECT and PING; PostgreSQL's
        // SSLRequest) get no answer, and the connection closes. NATS speaks first, and
        // Envoy's RBAC filter judges a connection by its first bytes from the client, so
        // the server's INFO greeting may come through before that; nothing after it does.
        for (name, caller, want_answer) in [
            ("the intruder", "client-intruder", false),
            ("orders", "client-orders", true),
        ] {
            let (pg, nats) = inside(&shop, caller, || async {
                Ok((
                    tcp_exchange(5432, SSL_REQUEST).await?,
                    tcp_exchange(4222, NATS_PING).await?,
                ))
            })
            .await?;
            // PostgreSQL without TLS answers an SSLRequest with one byte, `N`.
            let pg_answered = pg == b"N";
            let nats_answered = String::from_utf8_lossy(&nats).contains("PONG");
            ensure(
                pg_answered == want_answer && nats_answered == want_answer,
                || {
                    format!(
                        "{name}'s connections (answers wanted: {want_answer}): postgres answered \
                     {:?}, nats {:?}",
                        String::from_utf8_lossy(&pg),
                        String::from_utf8_lossy(&nats)
                    )
                },
            )?;
        }
        Ok(())
    })
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 4, 210, 22, 47];
/// A NATS client's first words.
const NATS_PING: &[u8] = b"CONNECT {\"verbose\":false}\r\nPING\r\n";

/// Sends `bytes` through the sidecar's outbound listener on `port`, and returns what comes
/// back until the connection closes or is quiet for two seconds.
async fn tcp_exchange(port: u16, bytes: &[u8]) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = format!("{}:{port}", kube_harness::mesh::EGRESS_IP);
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(fail("connect to the sidecar"))?;
    // A closed connection may refuse the write; what came back says the rest.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 512];
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    Ok(answer)
}

/// orders' identity passes where the policies list it (catalog, inventory) and is denied
/// where they do not (payments, fulfillment, notifications, orchestrator).
fn listed_pass(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let outcome = inside(&shop, "client-orders", || async {
            let mut codes = Vec::new();
            let channel = through_sidecar("catalog", 50051).await?;
            let mut request = tonic::Request::new(ListProductsRequest {
                page_size: 2,
                ..Default::default()
            });
            request.set_timeout(CALL_TIMEOUT);
            let got = CatalogServiceClient::new(channel)
                .list_products(request)
                .await;
            codes.push(("catalog ListProducts", code(&got), Code::Ok));
            let channel = through_sidecar("inventory", 50052).await?;
            let mut request = tonic::Request::new(GetStockRequest {
                product_id: "burr-grinder".to_owned(),
            });
            request.set_timeout(CALL_TIMEOUT);
            let got = InventoryServiceClient::new(channel)
                .get_stock(request)
                .await;
            codes.push(("inventory GetStock", code(&got), Code::Ok));
            for (service, port, grpc) in &SERVICES[3..] {
                let channel = through_sidecar(service, *port).await?;
                let got = HealthClient::new(channel).check(health(grpc)).await;
                codes.push((*service, code(&got), Code::PermissionDenied));
            }
            Ok(codes)
        })
        .await?;
        for (what, got, want) in &outcome {
            ensure(got == want, || {
                format!("orders' call to {what}: {got:?}, not {want:?}")
            })?;
        }
        Ok(())
    })
}
