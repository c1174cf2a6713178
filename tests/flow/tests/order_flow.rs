//! An order through the whole shop, as a customer and an operator would see it, in both
//! setups: placed over gRPC, carried by events through payment, shipment and
//! notification, and settled by the orchestrator.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use flow::{SETTLE, Setup, Shop, as_customer, order_request, settle};
use meshmart::proto::{
    fulfillment::{ListShipmentsRequest, shipment},
    inventory::{GetReservationRequest, GetStockRequest, ReservationState},
    notifications::{ListNotificationsRequest, notification::Kind},
    orders::{GetOrderRequest, ListOrdersRequest, State},
    payments::{ListChargesRequest, charge},
};

const PRODUCT: &str = "ceramic-dripper";

async fn available(shop: &Shop) -> i64 {
    let stock = shop
        .inventory
        .clone()
        .get_stock(GetStockRequest {
            product_id: PRODUCT.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .stock
        .unwrap();
    stock.available_quantity
}

async fn reservation_state(shop: &Shop, order_id: &str) -> ReservationState {
    shop.inventory
        .clone()
        .get_reservation(GetReservationRequest {
            reservation_id: order_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
        .state()
}

async fn charges(shop: &Shop, order_id: &str) -> Vec<meshmart::proto::payments::Charge> {
    let request = ListChargesRequest {
        order_id: order_id.to_owned(),
        ..Default::default()
    };
    shop.payments
        .clone()
        .list_charges(request)
        .await
        .unwrap()
        .into_inner()
        .charges
}

async fn shipments(shop: &Shop, order_id: &str) -> Vec<meshmart::proto::fulfillment::Shipment> {
    let request = ListShipmentsRequest {
        order_id: order_id.to_owned(),
        ..Default::default()
    };
    shop.fulfillment
        .clone()
        .list_shipments(request)
        .await
        .unwrap()
        .into_inner()
        .shipments
}

/// The kinds of the customer's notifications about `order_id`, once `expected` many have
/// arrived (notifications are consumed beside the order's own settling).
async fn notifications(shop: &Shop, customer: &str, order_id: &str, expected: usize) -> Vec<Kind> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let request = as_customer(
            customer,
            ListNotificationsRequest {
                order_id: order_id.to_owned(),
                page_size: 100,
                ..Default::default()
            },
        );
        let listed = shop
            .notifications
            .clone()
            .list_notifications(request)
            .await
            .unwrap();
        let mut kinds: Vec<Kind> = listed
            .into_inner()
            .notifications
            .iter()
            .map(|n| n.kind())
            .collect();
        if kinds.len() >= expected || tokio::time::Instant::now() > deadline {
            kinds.sort_by_key(|kind| *kind as i32);
            return kinds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn order_id(name: &str) -> &str {
    name.strip_prefix("orders/").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_order_completes_with_its_stock_taken_one_charge_and_one_shipment() {
    for setup in Setup::available() {
        let shop = Shop::start(setup, "happy").await;
        let before = available(&shop).await;

        let placed = shop
            .orders
            .clone()
            .create_order(as_customer(
                "ada",
                order_request("happy-1", PRODUCT, 2, "tok_visa_approved", "SW1Y 4LE"),
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(placed.state(), State::Pending, "{setup:?}");
        let unit_price = placed.lines[0].unit_price.clone().unwrap();
        assert_eq!((unit_price.units, unit_price.nanos), (24, 500_000_000));
        let id = order_id(&placed.name).to_owned();

        let (order, seen) = settle(&shop, "ada", &placed.name).await;
        assert_eq!(order.state(), State::Completed, "{setup:?}: {order:?}");
        assert_eq!(seen.last(), Some(&State::Completed));
        let history: Vec<State> = order.history.iter().map(|t| t.state()).collect();
        assert_eq!(
            history,
            [
                State::Pending,
                State::Paid,
                State::Shipped,
                State::Completed
            ],
            "{setup:?}"
        );

        assert_eq!(
            reservation_state(&shop, &id).await,
            ReservationState::Committed
        );
        assert_eq!(available(&shop).await, before - 2, "{setup:?}");
        let charges = charges(&shop, &id).await;
        assert_eq!(charges.len(), 1, "{setup:?}: {charges:?}");
        assert_eq!(charges[0].state(), charge::State::Succeeded);
        let shipments = shipments(&shop, &id).await;
        assert_eq!(shipments.len(), 1, "{setup:?}: {shipments:?}");
        assert_eq!(shipments[0].state(), shipment::State::Shipped);
        assert_eq!(
            notifications(&shop, "ada", &id, 3).await,
            [Kind::OrderPlaced, Kind::OrderShipped, Kind::OrderCompleted],
            "{setup:?}"
        );
        shop.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_card_fails_the_order_and_gives_its_stock_back() {
    for setup in Setup::available() {
        let shop = Shop::start(setup, "declined").await;
        let before = available(&shop).await;

        let placed = shop
            .orders
            .clone()
            .create_order(as_customer(
                "bob",
                order_request("declined-1", PRODUCT, 3, "tok_visa_declined", "SW1Y 4LE"),
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        let id = order_id(&placed.name).to_owned();

        let (order, _) = settle(&shop, "bob", &placed.name).await;
        assert_eq!(order.state(), State::Failed, "{setup:?}: {order:?}");
        assert!(
            order.failure_reason.contains("declined"),
            "{:?}",
            order.failure_reason
        );

        assert_eq!(
            reservation_state(&shop, &id).await,
            ReservationState::Released
        );
        assert_eq!(
            available(&shop).await,
            before,
            "{setup:?}: the stock is back"
        );
        let charges = charges(&shop, &id).await;
        assert!(
            charges
                .iter()
                .all(|c| c.state() != charge::State::Succeeded),
            "{charges:?}"
        );
        let shipped = shipments(&shop, &id).await;
        assert!(
            shipped
                .iter()
                .all(|s| s.state() != shipment::State::Shipped),
            "{shipped:?}"
        );
        let kinds = notifications(&shop, "bob", &id, 3).await;
        assert_eq!(
            kinds,
            [Kind::OrderPlaced, Kind::PaymentDeclined, Kind::OrderFailed],
            "{setup:?}"
        );
        shop.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flaky_provider_is_tried_again_and_charges_once() {
    for setup in Setup::available() {
        let shop = Shop::start(setup, "flaky").await;
        let placed = shop
            .orders
            .clone()
            .create_order(as_customer(
                "cy",
                order_request("flaky-1", PRODUCT, 1, "tok_visa_flaky", "SW1Y 4LE"),
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        let id = order_id(&placed.name).to_owned();

        let (order, _) = settle(&shop, "cy", &placed.name).await;
        assert_eq!(order.state(), State::Completed, "{setup:?}: {order:?}");
        let charges = charges(&shop, &id).await;
        assert_eq!(charges.len(), 1, "{setup:?}: {charges:?}");
        assert_eq!(charges[0].state(), charge::State::Succeeded);
        assert_eq!(
            charges[0].attempts, 3,
            "{setup:?}: two transient failures, then approved"
        );
        shop.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_identical_creates_make_one_order_and_one_reply() {
    for setup in Setup::available() {
        let shop = Shop::start(setup, "hundred").await;
        let before = available(&shop).await;
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let mut orders = shop.orders.clone();
                tokio::spawn(async move {
                    orders
                        .create_order(as_customer(
                            "dee",
                            order_request("same-key", PRODUCT, 1, "tok_visa_approved", "SW1Y 4LE"),
                        ))
                        .await
                        .map(|reply| reply.into_inner())
                })
            })
            .collect();
        let mut replies = Vec::new();
        for call in calls {
            replies.push(call.await.unwrap().unwrap());
        }
        assert!(
            replies.windows(2).all(|pair| pair[0] == pair[1]),
            "{setup:?}: every caller gets the first reply"
        );
        let placed = replies[0].order.clone().unwrap();
        let id = order_id(&placed.name).to_owned();

        let (order, _) = settle(&shop, "dee", &placed.name).await;
        assert_eq!(order.state(), State::Completed, "{setup:?}");
        let listed = shop
            .orders
            .clone()
            .list_orders(as_customer("dee", ListOrdersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .orders;
        assert_eq!(listed.len(), 1, "{setup:?}: one order");
        assert_eq!(
            available(&shop).await,
            before - 1,
            "{setup:?}: one reservation, committed"
        );
        assert_eq!(charges(&shop, &id).await.len(), 1, "{setup:?}: one charge");
        assert_eq!(
            shipments(&shop, &id).await.len(),
            1,
            "{setup:?}: one shipment"
        );

        // The same key with another order is a client bug, not a retry.
        let reused = shop
            .orders
            .clone()
            .create_order(as_customer(
                "dee",
                order_request("same-key", PRODUCT, 2, "tok_visa_approved", "SW1Y 4LE"),
            ))
            .await
            .unwrap_err();
        assert_eq!(reused.code(), tonic::Code::AlreadyExists, "{setup:?}");

        // Another customer sees none of it.
        let hidden = shop
            .orders
            .clone()
            .get_order(as_customer(
                "eve",
                GetOrderRequest {
                    name: placed.name.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(hidden.code(), tonic::Code::NotFound);
        shop.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_that_cannot_ship_is_refunded_and_fails() {
    for setup in Setup::available() {
        let shop = Shop::start(setup, "unshippable").await;
        let before = available(&shop).await;
        let placed = shop
            .orders
            .clone()
            .create_order(as_customer(
                "fay",
                order_request("nowhere-1", PRODUCT, 1, "tok_visa_approved", "00000"),
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        let id = order_id(&placed.name).to_owned();

        let (order, _) = settle(&shop, "fay", &placed.name).await;
        assert_eq!(order.state(), State::Failed, "{setup:?}: {order:?}");
        assert_eq!(
            reservation_state(&shop, &id).await,
            ReservationState::Released
        );
        assert_eq!(available(&shop).await, before, "{setup:?}");
        // Paid, then given back: the refund is issued once.
        let kinds = notifications(&shop, "fay", &id, 3).await;
        assert!(kinds.contains(&Kind::OrderFailed), "{kinds:?}");
        let refunds = {
            let deadline = tokio::time::Instant::now() + SETTLE;
            loop {
                let listed = shop
                    .payments
                    .clone()
                    .list_refunds(meshmart::proto::payments::ListRefundsRequest {
                        order_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .refunds;
                if !listed.is_empty() || tokio::time::Instant::now() > deadline {
                    break listed;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        assert_eq!(refunds.len(), 1, "{setup:?}: {refunds:?}");
        shop.stop().await;
    }
}
