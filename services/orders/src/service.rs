//! The gRPC face of orders: check the request, place or read orders, shape the reply.
//!
//! CreateOrder, step by step (docs/architecture.md, "Placing an order"):
//! 1. the order id is derived from the customer and the request_id, so every attempt of
//!    one call, on any replica, means the same order;
//! 2. an order already stored under it answers at once: its first reply, or
//!    ALREADY_EXISTS when its request differs;
//! 3. the catalog prices the lines; inventory holds the stock (reservation id = order id,
//!    so attempts share one reservation);
//! 4. one transaction stores the order, its first history entry, the reply, and the three
//!    events of the flow in the outbox; the loser of a race between attempts finds the
//!    winner's row and answers its reply.
//!
//! Stock held by an attempt that then fails (the database out of reach, the caller gone)
//! stays held for the retry, which reuses the reservation; without a retry inventory gives
//! it back after its time-to-live.

use meshmart::{
    context::CallContext,
    customer,
    db::now_millis,
    events::outbox::Outbox,
    proto::{
        google::r#type::Money,
        orders::{self as pb, order_service_server::OrderService},
    },
    status::Failure,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::{
    Error, Result,
    downstream::Downstream,
    metrics::Metrics,
    order_events, order_id, render,
    store::{Cursor, Earlier, Line, NewOrder, OrderRecord, Placed, State, Store, Transition},
    validate::{self, NewOrderRequest},
    watch::{self, Changes, WatchStream},
};

/// The orders service.
#[derive(Debug, Clone)]
pub struct Orders {
    store: Store,
    outbox: Outbox,
    downstream: Downstream,
    changes: Changes,
    metrics: Metrics,
}

impl Orders {
    pub(crate) fn new(
        store: Store,
        outbox: Outbox,
        downstream: Downstream,
        changes: Changes,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            outbox,
            downstream,
            changes,
            metrics,
        }
    }

    async fn create(
        &self,
        customer_id: String,
        request: NewOrderRequest,
    ) -> Result<pb::CreateOrderResponse> {
        let order_id = order_id::order_id(&customer_id, &request.request_id);
        let fingerprint = order_id::fingerprint(&request);
        if let Some(earlier) = self.store.placed_earlier(&order_id).await? {
            return self.replay(&request.request_id, &fingerprint, earlier);
        }
        let product_ids: Vec<String> = request.lines.iter().map(|(id, _)| id.clone()).collect();
        let prices = self
            .downstream
            .prices(&product_ids)
            .await
            .inspect_err(|error| {
                if matches!(error, Error::UnknownProducts(_)) {
                    self.metrics.placement("unknown_product");
                }
            })?;
        let lines = request
            .lines
            .iter()
            .map(|(product_id, quantity)| Line {
                product_id: product_id.clone(),
                quantity: *quantity,
                unit_price: prices.get(product_id).cloned().unwrap_or_default(),
            })
            .collect::<Vec<_>>();
        let total = total(&lines)?;
        let stock_held = self
            .downstream
            .reserve(&order_id, &request.request_id, &request.lines)
            .await
            .inspect_err(|error| {
                if matches!(error, Error::OutOfStock(_)) {
                    self.metrics.placement("out_of_stock");
                }
            })?;
        let now = now_millis();
        let order = NewOrder {
            record: OrderRecord {
                order_id,
                customer_id,
                lines,
                total,
                state: State::Pending,
                failure_reason: String::new(),
                address: request.address.clone(),
                history: vec![Transition {
                    state: State::Pending,
                    time_ms: now,
                    reason: String::new(),
                }],
                create_time_ms: now,
                update_time_ms: now,
            },
            request_id: request.request_id.clone(),
            fingerprint: fingerprint.clone(),
        };
        let reply = pb::CreateOrderResponse {
            order: Some(render::order(order.record.clone())),
        };
        let events = order_events::placed(&order, &request.payment_token);
        match self
            .store
            .place(&order, &reply.encode_to_vec(), &events, stock_held)
            .await?
        {
            Placed::Now => {
                // Committed, not yet published: a crash here is what the outbox is for.
                meshmart::fault::crash_point("orders.after_commit");
                self.outbox.committed();
                self.metrics.placement("placed");
                self.metrics.transition(State::Pending);
                Ok(reply)
            }
            Placed::Earlier(earlier) => self.replay(&request.request_id, &fingerprint, earlier),
        }
    }

    /// The answer to a request whose order is stored: the first reply, byte for byte, or
    /// ALREADY_EXISTS when the request_id came with another request.
    fn replay(
        &self,
        request_id: &str,
        fingerprint: &str,
        earlier: Earlier,
    ) -> Result<pb::CreateOrderResponse> {
        if earlier.fingerprint != fingerprint {
            return Err(Failure::key_reused("request_id", request_id).into());
        }
        self.metrics.placement("replayed");
        pb::CreateOrderResponse::decode(earlier.reply.as_slice())
            .map_err(|_| Error::UnreadableReply(request_id.to_owned()))
    }
}

/// The sum of the lines, in their one currency.
fn total(lines: &[Line]) -> Result<Money> {
    const NANOS: i128 = 1_000_000_000;
    let currency_code = lines
        .first()
        .map(|line| line.unit_price.currency_code.clone())
        .unwrap_or_default();
    let mut currencies: Vec<&str> = lines
        .iter()
        .map(|line| line.unit_price.currency_code.as_str())
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    if currencies.len() > 1 {
        return Err(Error::MixedCurrencies(currencies.join(", ")));
    }
    // In nanos, as i128: at most 20 lines of 100 units of 10^9 each, far inside.
    let sum: i128 = lines
        .iter()
        .map(|line| {
            let unit =
                i128::from(line.unit_price.units) * NANOS + i128::from(line.unit_price.nanos);
            unit * i128::from(line.quantity)
        })
        .sum();
    Ok(Money {
        currency_code,
        units: i64::try_from(sum / NANOS).unwrap_or(i64::MAX),
        nanos: i32::try_from(sum % NANOS).unwrap_or_default(),
    })
}

#[tonic::async_trait]
impl OrderService for Orders {
    #[tracing::instrument(skip_all, fields(order_id = tracing::field::Empty))]
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let customer_id = customer::of(&request)?;
        let request = validate::create(request.get_ref())?;
        tracing::Span::current().record(
            "order_id",
            order_id::order_id(&customer_id, &request.request_id),
        );
        Ok(Response::new(self.create(customer_id, request).await?))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let customer_id = customer::of(&request)?;
        let order_id = validate::order_name("name", &request.get_ref().name)?;
        let record = self.store.get(&customer_id, &order_id).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(render::order(record)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let customer_id = customer::of(&request)?;
        let (after, size) = validate::list(request.get_ref())?;
        let (records, more) = self.store.list(&customer_id, after.as_ref(), size).await?;
        let next_page_token = match records.last() {
            Some(last) if more => validate::page_token(&Cursor {
                create_time_ms: last.create_time_ms,
                order_id: last.order_id.clone(),
            }),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListOrdersResponse {
            orders: records.into_iter().map(render::order).collect(),
            next_page_token,
        }))
    }

    type WatchOrderStream = WatchStream;

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn watch_order(
        &self,
        request: Request<pb::WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let customer_id = customer::of(&request)?;
        let order_id = validate::order_name("name", &request.get_ref().name)?;
        let deadline = CallContext::current().and_then(|context| context.deadline());
        let record = self.store.get(&customer_id, &order_id).await?;
        Ok(Response::new(watch::start(
            self.store.clone(),
            &self.changes,
            customer_id,
            render::order(record),
            deadline,
        )))
    }
}
