//! What the mesh's resilience does to real calls, and what the services do to make it
//! safe: a retried mutation has its effect once, a slow dependency meets the route's
//! timeout (DEADLINE_EXCEEDED, not a hang), and the committed fault files inject what they
//! say and come off again.
//!
//! The services fail on request through `meshmart::fault::faults` (the `fault-injection`
//! feature of test builds): a test writes a workload's faults file.

use std::sync::Arc;

use kube_harness::mesh::Shop;
use kube_harness::repo_root;
use meshmart::proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use meshmart::proto::inventory::{
    GetStockRequest, inventory_service_client::InventoryServiceClient,
};
use meshmart::proto::orders::{self, ListOrdersRequest, order_service_client::OrderServiceClient};
use tonic::{Code, Request};

use super::canary::within;
use super::edge::{PRODUCT, create_order, settle};
use super::support::{
    CALL_TIMEOUT, Test, TestFuture, authorized, code, counter_sum, edge, ensure, fail, inside,
    through_sidecar, token,
};

pub(crate) const TESTS: &[(&str, Test)] = &[
    (
        "retried_reservation_and_order_have_their_effect_once",
        effect_once,
    ),
    (
        "slow_inventory_meets_the_route_timeout_deadline_exceeded",
        route_timeout,
    ),
    (
        "fault_files_inject_their_codes_at_their_rates_and_come_off",
        fault_files,
    ),
];

/// Answers by code.
type Codes = std::collections::HashMap<Code, usize>;

/// Writes `lines` as the faults file of the workload `name`.
fn set_faults(shop: &Shop, name: &str, lines: &str) -> Result<(), String> {
    let file = shop
        .workload(name)
        .map_err(|e| e.to_string())?
        .faults_file();
    std::fs::write(&file, lines).map_err(fail(&format!("write {}", file.display())))
}

/// Whether every count in the faults file of `name` is used up: a file left as written
/// means the binary has no fault layer (built without the `fault-injection` feature).
fn faults_used_up(shop: &Shop, name: &str) -> Result<bool, String> {
    let file = shop
        .workload(name)
        .map_err(|e| e.to_string())?
        .faults_file();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    Ok(text
        .lines()
        .filter(|l| l.contains(" unavailable-"))
        .all(|l| l.ends_with(" 0")))
}

/// The no-fault-layer hint for a failure.
const NO_FAULT_LAYER: &str = "the faults file was not used: are the service binaries a test build \
     (`cargo test --workspace --no-run`, or make mesh-test)?";

/// The burr grinder's stock as catalog answers it, asked from inside the mesh.
async fn available(shop: &Shop) -> Result<i64, String> {
    inside(shop, "client-orders", || async {
        let mut request = Request::new(GetProductRequest {
            name: PRODUCT.to_owned(),
        });
        request.set_timeout(CALL_TIMEOUT);
        let product = CatalogServiceClient::new(through_sidecar("catalog", 50051).await?)
            .get_product(request)
            .await
            .map_err(fail("GetProduct"))?
            .into_inner()
            .product
            .ok_or("no product")?;
        Ok(product.available_quantity)
    })
    .await
}

/// 1. Inventory reserves the stock and its answer is lost (UNAVAILABLE): orders' route
///    retries ReserveStock, the reservation's key makes the retry find the first one, and
///    the order completes having taken one grinder, not two.
/// 2. Orders places the order and its answer is lost: the mesh does not retry CreateOrder
///    (one try, as the chart says), the client does with the same request_id and gets the
///    same order; the customer has one order, and the stock went down once more.
fn effect_once(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let customer = token(&["--sub", "retry-customer"])?;
        let mut orders = OrderServiceClient::new(edge(&shop).await?);

        let before = available(&shop).await?;
        set_faults(
            &shop,
            "inventory-v1",
            "/meshmart.inventory.v1.InventoryService/ReserveStock unavailable-after 1\n",
        )?;
        let order = create_order(&mut orders, &customer, "retry-1")
            .await?
            .map_err(fail("CreateOrder while inventory loses one answer"))?;
        ensure(faults_used_up(&shop, "inventory-v1")?, || {
            NO_FAULT_LAYER.to_owned()
        })?;
        let state = settle(&mut orders, &customer, &order.name).await?;
        ensure(state == orders::State::Completed, || {
            format!("{} ended {state:?}", order.name)
        })?;
        let after = available(&shop).await?;
        ensure(after == before - 1, || {
            format!("one grinder ordered with a retried reservation: stock {before} -> {after}")
        })?;

        set_faults(
            &shop,
            "orders-v1",
            "/meshmart.orders.v1.OrderService/CreateOrder unavailable-after 1\n",
        )?;
        let first = create_order(&mut orders, &customer, "retry-2").await?;
        ensure(faults_used_up(&shop, "orders-v1")?, || {
            NO_FAULT_LAYER.to_owned()
        })?;
        ensure(
            first.as_ref().err().map(tonic::Status::code) == Some(Code::Unavailable),
            || format!("CreateOrder whose answer was lost: {first:?}, not UNAVAILABLE"),
        )?;
        let again = create_order(&mut orders, &customer, "retry-2")
            .await?
            .map_err(fail("CreateOrder retried with the same request_id"))?;
        let state = settle(&mut orders, &customer, &again.name).await?;
        ensure(state == orders::State::Completed, || {
            format!("{} ended {state:?}", again.name)
        })?;
        let listed = orders
            .list_orders(authorized(
                ListOrdersRequest {
                    page_size: 50,
                    ..Default::default()
                },
                Some(&customer),
            ))
            .await
            .map_err(fail("ListOrders"))?
            .into_inner()
            .orders;
        ensure(listed.len() == 2, || {
            format!(
                "the customer placed two orders (one retried), and has {}: {listed:?}",
                listed.len()
            )
        })?;
        let last = available(&shop).await?;
        ensure(last == after - 1, || {
            format!("one grinder ordered, the order retried: stock {after} -> {last}")
        })
    })
}

/// Inventory answers GetStock after 5 s; the caller's deadline is 30 s. The call ends with
/// DEADLINE_EXCEEDED, not a hang and not the answer 5 s later: inventory's read route
/// (2 tries of 1 s within 2 s) ends it, at whichever comes first of Envoy's route timeout
/// (`UT` in the caller's access log) and inventory's own deadline, which Envoy gives it as
/// the try's timeout (`x-envoy-expected-rq-timeout-ms`) and the service enforces.
fn route_timeout(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        set_faults(
            &shop,
            "inventory-v1",
            "/meshmart.inventory.v1.InventoryService/GetStock delay 5000\n",
        )?;
        let got = inside(&shop, "client-orders", || async {
            let mut request = Request::new(GetStockRequest {
                product_id: "burr-grinder".to_owned(),
            });
            request.set_timeout(std::time::Duration::from_secs(30));
            let channel = through_sidecar("inventory", 50052).await?;
            Ok(code(
                &InventoryServiceClient::new(channel)
                    .get_stock(request)
                    .await,
            ))
        })
        .await;
        set_faults(&shop, "inventory-v1", "")?;
        let got = got?;
        if got != Code::DeadlineExceeded {
            tokio::time::sleep(std::time::Duration::from_secs(6)).await;
            let log = &shop
                .workload("client-orders")
                .map_err(|e| e.to_string())?
                .proxy_log;
            let lines: Vec<String> = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("GetStock"))
                .map(str::to_owned)
                .collect();
            return Err(format!(
                "GetStock of a slow inventory: {got:?}, not DeadlineExceeded; the caller's proxy logged {lines:#?}"
            ));
        }
        Ok(())
    })
}

/// istio/faults/inventory-abort.yaml: about half of catalog's calls to inventory fail
/// with UNAVAILABLE, and catalog answers those GetProducts UNAVAILABLE (its caller in the
/// mesh makes one try); inventory-delay.yaml: every call to inventory waits (Envoy's own
/// count of the delays it injected) and succeeds; `kubectl apply -k istio/`, as
/// docs/deploy.md says, takes them off.
fn fault_files(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        let faults = repo_root().join("istio/faults");
        let kubectl = |args: Vec<String>| {
            let shop = Arc::clone(&shop);
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                shop.cluster()
                    .kubectl(&args, None)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        let apply_file = |name: &str| {
            vec![
                "apply".to_owned(),
                "-f".to_owned(),
                faults.join(name).display().to_string(),
            ]
        };
        let revert = vec![
            "apply".to_owned(),
            "-k".to_owned(),
            repo_root().join("istio").display().to_string(),
        ];

        kubectl(apply_file("inventory-abort.yaml")).await?;
        let aborted_before = catalog_faults(&shop, "aborts_injected").await?;
        let codes = settle_codes(&shop, 400, |c| {
            c.get(&Code::Unavailable).is_some_and(|n| *n > 0)
        })
        .await?;
        let aborted = catalog_faults(&shop, "aborts_injected").await? - aborted_before;
        let unavailable = codes.get(&Code::Unavailable).copied().unwrap_or(0);
        let ok = codes.get(&Code::Ok).copied().unwrap_or(0);
        ensure(
            ok + unavailable == 400 && within(unavailable, 400, 50.0) && aborted > 0,
            || {
                format!(
                    "400 GetProducts under inventory-abort.yaml (50%): {codes:?}, with {aborted} \
                     aborts injected by catalog's proxies"
                )
            },
        )?;

        kubectl(apply_file("inventory-delay.yaml")).await?;
        let delayed_before = catalog_faults(&shop, "delays_injected").await?;
        let codes = settle_codes(&shop, 20, |c| c.get(&Code::Ok) == Some(&20)).await?;
        let delayed = catalog_faults(&shop, "delays_injected").await? - delayed_before;
        ensure(codes.get(&Code::Ok) == Some(&20) && delayed >= 20, || {
            format!(
                "20 GetProducts under inventory-delay.yaml: {codes:?}, with {delayed} delays \
                 injected by catalog's proxies"
            )
        })?;

        kubectl(revert).await?;
        let codes = settle_codes(&shop, 200, |c| c.get(&Code::Ok) == Some(&200)).await?;
        ensure(codes.get(&Code::Ok) == Some(&200), || {
            format!("200 GetProducts after `kubectl apply -k istio/`: {codes:?}")
        })
    })
}

/// The sum of Envoy's fault filter counter `name` (`...fault.<name>`) over catalog's
/// proxies, where the fault files' faults are injected (in the caller's sidecar).
async fn catalog_faults(shop: &Shop, name: &str) -> Result<u64, String> {
    let mut total = 0;
    for w in shop.workloads().iter().filter(|w| w.app() == "catalog") {
        total += counter_sum(shop, &w.name, &format!(".fault.{name}")).await?;
    }
    Ok(total)
}

/// Rounds of `n` GetProducts from inside the mesh until `done` says the mesh has taken
/// the change (istiod pushes within seconds), at most ten; the last round's codes.
async fn settle_codes(
    shop: &Shop,
    n: usize,
    done: impl Fn(&Codes) -> bool,
) -> Result<Codes, String> {
    let mut last = Codes::new();
    for _ in 0..10 {
        last = inside(shop, "client-orders", move || async move {
            let mut catalog = CatalogServiceClient::new(through_sidecar("catalog", 50051).await?);
            let mut codes = Codes::new();
            for _ in 0..n {
                let mut request = Request::new(GetProductRequest {
                    name: PRODUCT.to_owned(),
                });
                request.set_timeout(CALL_TIMEOUT);
                *codes
                    .entry(code(&catalog.get_product(request).await))
                    .or_insert(0) += 1;
            }
            Ok(codes)
        })
        .await?;
        if done(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Ok(last)
}
