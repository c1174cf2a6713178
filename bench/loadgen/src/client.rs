//! The calls themselves, on the generated clients: connecting, waiting for SERVING, finding
//! products to ask for, restocking for `place-order`, and making one call of a scenario.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use meshmart::{
    demo,
    probe::{HealthProbe, ServingStatus},
    proto::{
        catalog::{
            GetProductRequest, ListProductsRequest, catalog_service_client::CatalogServiceClient,
        },
        echo::{EchoRequest, echo_service_client::EchoServiceClient},
        inventory::{SetStockRequest, inventory_service_client::InventoryServiceClient},
        orders::{
            CreateOrderRequest, OrderLine, ShippingAddress, State,
            order_service_client::OrderServiceClient,
        },
    },
};
use tokio::time::Instant;
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};

use crate::{
    Error, flow,
    options::Options,
    scenario::{Rng, Scenario, Target},
};

/// `place-order` pays with the simulated provider's card that is always approved
/// (services/payments/src/provider.rs), so every order can complete.
const APPROVED_CARD: &str = "tok_visa_approved";

/// What `place-order` restocks every demo product to before a run.
///
/// The demo stock is 8 to 60 units a product: a second of orders. Each order takes one unit
/// for good once it completes (a failed one gives it back), so the run sets every product
/// to a million units first, more than a bounded run could order at any rate this shop
/// reaches (a thousand orders a second for a quarter of an hour). SetStock rather than
/// AdjustStock: the level is the same whatever earlier runs left, so repeated runs neither
/// run the stock down nor pile it up.
pub const RESTOCK_TO: i64 = 1_000_000;

/// Not a gRPC code: the call succeeded, but the reply was not an answer to what was asked.
pub const INVALID_REPLY: &str = "INVALID_REPLY";

/// How a call ended: OK, or the name of its gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error(&'static str),
}

/// One client per service the mix calls, all on one connection per service.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    catalog: Option<CatalogServiceClient<Channel>>,
    echo: Option<EchoServiceClient<Channel>>,
    orders: Option<OrderServiceClient<Channel>>,
    inventory: Option<InventoryServiceClient<Channel>>,
}

impl Clients {
    /// The orders client, for reading back the orders a run placed.
    pub fn orders(&self) -> Option<OrderServiceClient<Channel>> {
        self.orders.clone()
    }
}

/// What the calls ask for, fixed before the run so that picking costs next to nothing.
#[derive(Debug)]
pub struct Data {
    /// Product names, `products/{id}`, found in the catalog before the run.
    pub products: Vec<String>,
    pub page_size: i32,
    pub echo_message: String,
    pub timeout: Duration,
    /// Begins every `request_id` of this process ([`request_prefix`]).
    pub request_prefix: String,
    /// Numbers the `request_id`s of this process, each used once.
    pub sequence: AtomicU64,
}

/// How one call ended, and the order it placed if it was a successful `place-order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Called {
    pub outcome: Outcome,
    /// `orders/{id}`, to read back once the run is over.
    pub placed: Option<String>,
}

/// The start of this process's `request_id`s: its pid and start time. CreateOrder and
/// SetStock are idempotent on `request_id`, so an id from an earlier run (seeds repeat)
/// would get that run's answer back rather than a new order or stock level.
pub fn request_prefix() -> String {
    format!(
        "loadgen-{}-{}",
        std::process::id(),
        meshmart::db::now_millis()
    )
}

/// Opens `options.connections` connections to every service the mix calls.
pub async fn connect(options: &Options) -> Result<Vec<Clients>, Error> {
    let mut sets = vec![Clients::default(); options.connections];
    for target in options.mix.targets() {
        for clients in &mut sets {
            let channel = endpoint(options.target(target))?
                .connect()
                .await
                .map_err(|source| Error::Connect {
                    target: target.name(),
                    source,
                })?;
            match target {
                Target::Catalog => clients.catalog = Some(CatalogServiceClient::new(channel)),
                Target::Echo => clients.echo = Some(EchoServiceClient::new(channel)),
                Target::Orders => clients.orders = Some(OrderServiceClient::new(channel)),
                Target::Inventory => {
                    clients.inventory = Some(InventoryServiceClient::new(channel));
                }
            }
        }
    }
    Ok(sets)
}

fn endpoint(url: &str) -> Result<Endpoint, Error> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|_| Error::Address(url.to_owned()))?
        .connect_timeout(Duration::from_secs(2))
        // As the services do: small messages must not wait for Nagle.
        .tcp_nodelay(true))
}

/// Waits until every service the mix calls reports SERVING, polling its health, for at
/// most `options.wait_timeout` in all. In a cluster the load generator may start before
/// the shop does; it waits rather than fails.
pub async fn wait_until_serving(options: &Options) -> Result<(), Error> {
    let deadline = Instant::now() + options.wait_timeout;
    for target in options.mix.targets() {
        let url = options.target(target);
        let left = deadline.saturating_duration_since(Instant::now());
        HealthProbe::new(url, target.health_service())
            // Often enough to start soon after the service does, rarely enough not to
            // flood one that is starting.
            .interval(Duration::from_millis(250))
            .wait_for(ServingStatus::Serving, left)
            .await
            .map_err(|source| Error::NotServing {
                target: target.name(),
                source,
            })?;
        tracing::info!(service = target.name(), url, "service is serving");
    }
    Ok(())
}

/// The products to ask for: every product the catalog lists (at most 1000, in 10 pages).
pub async fn discover_products(clients: &Clients) -> Result<Vec<String>, Error> {
    let Some(catalog) = &clients.catalog else {
        return Ok(Vec::new());
    };
    let mut catalog = catalog.clone();
    let mut names = Vec::new();
    let mut page_token = String::new();
    for _ in 0..10 {
        let reply = catalog
            .list_products(ListProductsRequest {
                page_size: 100,
                page_token,
            })
            .await
            .map_err(Error::Discover)?
            .into_inner();
        names.extend(reply.products.into_iter().map(|p| p.name));
        if reply.next_page_token.is_empty() {
            break;
        }
        page_token = reply.next_page_token;
    }
    if names.is_empty() {
        return Err(Error::NoProducts);
    }
    Ok(names)
}

/// Sets every demo product's stock to [`RESTOCK_TO`] before a `place-order` run.
pub async fn restock(clients: &Clients, data: &Data) -> Result<(), Error> {
    let Some(inventory) = &clients.inventory else {
        return Ok(());
    };
    let mut inventory = inventory.clone();
    for product in demo::PRODUCTS {
        let request = SetStockRequest {
            product_id: product.id.to_owned(),
            available_quantity: RESTOCK_TO,
            request_id: format!("{}-restock-{}", data.request_prefix, product.id),
        };
        tokio::time::timeout(data.timeout, inventory.set_stock(request))
            .await
            .map_err(|_| Error::Restock(tonic::Status::deadline_exceeded("SetStock")))?
            .map_err(Error::Restock)?;
    }
    tracing::info!(
        products = demo::PRODUCTS.len(),
        stock = RESTOCK_TO,
        "restocked"
    );
    Ok(())
}

/// Makes one call of `scenario`, abandoning it after `data.timeout`.
pub async fn call(scenario: Scenario, clients: &mut Clients, data: &Data, rng: &mut Rng) -> Called {
    let mut placed = None;
    let outcome = match tokio::time::timeout(
        data.timeout,
        call_once(scenario, clients, data, rng, &mut placed),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Error(code_name(Code::DeadlineExceeded)),
    };
    Called {
        placed: placed.filter(|_| outcome == Outcome::Ok),
        outcome,
    }
}

/// An order of one unit of `product_id`, to a fixed address.
fn order_request(request_id: String, product_id: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        request_id,
        lines: vec![OrderLine {
            product_id: product_id.to_owned(),
            quantity: 1,
            unit_price: None,
        }],
        payment_token: APPROVED_CARD.to_owned(),
        shipping_address: Some(ShippingAddress {
            recipient: "Load Generator".to_owned(),
            address_lines: vec!["1 Loopback Lane".to_owned()],
            locality: "Localhost".to_owned(),
            postal_code: "12700".to_owned(),
            region_code: "DE".to_owned(),
        }),
    }
}

async fn call_once(
    scenario: Scenario,
    clients: &mut Clients,
    data: &Data,
    rng: &mut Rng,
    placed: &mut Option<String>,
) -> Outcome {
    let result = match scenario {
        Scenario::GetProduct => {
            let Some(catalog) = &mut clients.catalog else {
                return Outcome::Error(code_name(Code::FailedPrecondition));
            };
            let index = usize::try_from(rng.below(data.products.len() as u64)).unwrap_or_default();
            let Some(name) = data.products.get(index) else {
                return Outcome::Error(code_name(Code::FailedPrecondition));
            };
            catalog
                .get_product(GetProductRequest { name: name.clone() })
                .await
                .map(|reply| {
                    reply
                        .get_ref()
                        .product
                        .as_ref()
                        .is_some_and(|p| &p.name == name)
                })
        }
        Scenario::ListProducts => {
            let Some(catalog) = &mut clients.catalog else {
                return Outcome::Error(code_name(Code::FailedPrecondition));
            };
            catalog
                .list_products(ListProductsRequest {
                    page_size: data.page_size,
                    page_token: String::new(),
                })
                .await
                .map(|reply| !reply.get_ref().products.is_empty())
        }
        Scenario::Echo => {
            let Some(echo) = &mut clients.echo else {
                return Outcome::Error(code_name(Code::FailedPrecondition));
            };
            echo.echo(EchoRequest {
                message: data.echo_message.clone(),
            })
            .await
            .map(|reply| reply.get_ref().message.len() == data.echo_message.len())
        }
        Scenario::PlaceOrder => {
            let Some(orders) = &mut clients.orders else {
                return Outcome::Error(code_name(Code::FailedPrecondition));
            };
            let index = usize::try_from(rng.below(demo::PRODUCTS.len() as u64)).unwrap_or_default();
            let Some(product) = demo::PRODUCTS.get(index) else {
                return Outcome::Error(code_name(Code::FailedPrecondition));
            };
            let n = data.sequence.fetch_add(1, Ordering::Relaxed);
            let request = order_request(format!("{}-{n}", data.request_prefix), product.id);
            orders
                .create_order(flow::as_customer(request))
                .await
                .map(|reply| match reply.into_inner().order {
                    Some(order)
                        if order.state() == State::Pending && order.name.starts_with("orders/") =>
                    {
                        *placed = Some(order.name);
                        true
                    }
                    _ => false,
                })
        }
    };
    match result {
        Ok(true) => Outcome::Ok,
        Ok(false) => Outcome::Error(INVALID_REPLY),
        Err(status) => Outcome::Error(code_name(status.code())),
    }
}

/// The canonical name of a gRPC status code, as gRPC's own tools print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
