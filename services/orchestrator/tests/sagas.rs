//! Sagas over a real inventory and a real event bus, on every broker and database
//! backend: completion commits the reservation, failures release it and refund what was
//! charged, a late charge is refunded, and the order of events does not change the outcome.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    events::{Outgoing, metadata::subjects},
    proto::{
        inventory::ReservationState,
        orchestrator::{ListSagasRequest, saga::State},
    },
    testing::{Backend, Broker, setups},
};
use support::*;

fn count(published: &[Published], subject: &str) -> usize {
    published.iter().filter(|p| p.subject == subject).count()
}

fn steps_named(saga: &meshmart::proto::orchestrator::Saga, name: &str) -> usize {
    saga.steps
        .iter()
        .filter(|s| s.description.starts_with(name))
        .count()
}

async fn the_happy_path_commits_and_completes_once(broker: &Broker, backend: Backend) {
    let mut shop = start(broker, backend, "happy", 1000).await;
    let order = "order-happy";
    shop.reserve(order).await;
    let events = [created(order), paid(order), shipped(order)];
    for event in &events {
        shop.publish(event.clone()).await;
    }
    // Every event again, as a redelivery past the broker's de-duplication would bring it.
    for event in &events {
        shop.publish(again(event)).await;
    }
    let saga = shop
        .saga_until(order, |s| s.state() == State::Completed)
        .await;
    assert!(saga.paid && saga.shipped, "{saga:#?}");
    assert_eq!(saga.charge_id, format!("charge-{order}"));
    assert_eq!(shop.reservation(order).await, ReservationState::Committed);
    let published = shop.published_about(order, 1).await;
    assert_eq!(
        count(&published, subjects::ORDER_COMPLETED),
        1,
        "{published:?}"
    );
    assert_eq!(published.len(), 1, "{published:?}");
    let saga = shop
        .saga_until(order, |s| s.state() == State::Completed)
        .await;
    assert_eq!(steps_named(&saga, "reservation committed"), 1, "{saga:#?}");
    assert_eq!(steps_named(&saga, "OrderCompleted published"), 1);
    shop.stop().await;
}

async fn a_decline_releases_and_fails_without_refund(broker: &Broker, backend: Backend) {
    let mut shop = start(broker, backend, "decline", 1000).await;
    let order = "order-declined";
    shop.reserve(order).await;
    shop.publish(created(order)).await;
    shop.publish(declined(order)).await;
    let saga = shop.saga_until(order, |s| s.state() == State::Failed).await;
    assert_eq!(saga.failure_reason, "payment declined: card declined");
    assert!(!saga.paid);
    assert_eq!(shop.reservation(order).await, ReservationState::Released);
    let published = shop.published_about(order, 1).await;
    assert_eq!(
        published,
        vec![Published {
            subject: subjects::ORDER_FAILED.to_owned(),
            order_id: order.to_owned(),
            detail: "payment declined: card declined".to_owned(),
        }]
    );
    // A payment failure payments will retry changes nothing; a final one is too late.
    let order = "order-retried";
    shop.reserve(order).await;
    shop.publish(created(order)).await;
    shop.publish(payment_failed(order, true)).await;
    let saga = shop
        .saga_until(order, |s| steps_named(s, "PaymentFailed received") == 1)
        .await;
    assert_eq!(saga.state(), State::AwaitingPayment);
    shop.publish(payment_failed(order, false)).await;
    let saga = shop.saga_until(order, |s| s.state() == State::Failed).await;
    assert_eq!(saga.failure_reason, "payment failed: provider timed out");
    assert_eq!(shop.reservation(order).await, ReservationState::Released);
    shop.stop().await;
}

async fn a_shipment_failure_after_payment_refunds_once(broker: &Broker, backend: Backend) {
    let mut shop = start(broker, backend, "shipment_failure", 1000).await;
    let order = "order-unshippable";
    shop.reserve(order).await;
    let events = [created(order), paid(order), shipment_failed(order)];
    for event in &events {
        shop.publish(event.clone()).await;
    }
    for event in &events {
        shop.publish(again(event)).await;
    }
    let saga = shop.saga_until(order, |s| s.state() == State::Failed).await;
    assert!(
        saga.failure_reason.starts_with("shipment failed: "),
        "{saga:#?}"
    );
    assert_eq!(shop.reservation(order).await, ReservationState::Released);
    let published = shop.published_about(order, 2).await;
    assert_eq!(
        count(&published, subjects::REFUND_REQUESTED),
        1,
        "{published:?}"
    );
    assert_eq!(
        count(&published, subjects::ORDER_FAILED),
        1,
        "{published:?}"
    );
    assert_eq!(published.len(), 2, "{published:?}");
    let refund = published
        .iter()
        .find(|p| p.subject == subjects::REFUND_REQUESTED)
        .unwrap();
    assert_eq!(refund.detail, format!("charge-{order}"));
    shop.stop().await;
}

async fn a_charge_reported_after_the_order_failed_is_refunded(broker: &Broker, backend: Backend) {
    let mut shop = start(broker, backend, "late_charge", 1000).await;
    let order = "order-late-charge";
    shop.reserve(order).await;
    shop.publish(created(order)).await;
    shop.publish(shipment_failed(order)).await;
    shop.saga_until(order, |s| s.state() == State::Failed).await;
    let published = shop.published_about(order, 1).await;
    assert_eq!(
        count(&published, subjects::REFUND_REQUESTED),
        0,
        "{published:?}"
    );
    let late = paid(order);
    shop.publish(late.clone()).await;
    shop.publish(again(&late)).await;
    let saga = shop.saga_until(order, |s| s.paid).await;
    assert_eq!(saga.state(), State::Failed);
    let published = shop.published_about(order, 1).await;
    assert_eq!(
        published,
        vec![Published {
            subject: subjects::REFUND_REQUESTED.to_owned(),
            order_id: order.to_owned(),
            detail: format!("charge-{order}"),
        }]
    );
    shop.stop().await;
}

async fn any_order_of_events_gives_the_same_outcome(broker: &Broker, backend: Backend) {
    let mut shop = start(broker, backend, "any_order", 1000).await;
    type Make = fn(&str) -> Outgoing;
    let completing: [[Make; 3]; 3] = [
        [created, paid, shipped],
        [shipped, paid, created],
        [paid, shipped, created],
    ];
    let failing: [[Make; 3]; 3] = [
        [created, paid, shipment_failed],
        [shipment_failed, paid, created],
        [paid, shipment_failed, created],
    ];
    for (i, events) in completing.iter().enumerate() {
        let order = format!("order-completing-{i}");
        shop.reserve(&order).await;
        for make in events {
            shop.publish(make(&order)).await;
        }
    }
    for (i, events) in failing.iter().enumerate() {
        let order = format!("order-failing-{i}");
        shop.reserve(&order).await;
        for make in events {
            shop.publish(make(&order)).await;
        }
    }
    for i in 0..completing.len() {
        let order = format!("order-completing-{i}");
        let saga = shop
            .saga_until(&order, |s| {
                s.state() == State::Completed && steps_named(s, "OrderCreated received") == 1
            })
            .await;
        assert!(saga.paid && saga.shipped, "{saga:#?}");
        assert_eq!(shop.reservation(&order).await, ReservationState::Committed);
    }
    for i in 0..failing.len() {
        let order = format!("order-failing-{i}");
        let saga = shop
            .saga_until(&order, |s| {
                s.state() == State::Failed && s.paid && steps_named(s, "OrderCreated received") == 1
            })
            .await;
        assert!(
            saga.failure_reason.starts_with("shipment failed"),
            "{saga:#?}"
        );
        assert_eq!(steps_named(&saga, "refund requested"), 1, "{saga:#?}");
        assert_eq!(shop.reservation(&order).await, ReservationState::Released);
    }
    // Oldest first, three to a page, each saga once; and only the failed ones when asked.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = shop
            .sagas
            .list_sagas(ListSagasRequest {
                page_size: 3,
                page_token: token.clone(),
                state: 0,
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.sagas);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed.len(), 6, "{backend:?}");
    let keys: Vec<_> = listed
        .iter()
        .map(|s| {
            let t = s.create_time.unwrap();
            (t.seconds, t.nanos, s.order_id.clone())
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    let failed = shop
        .sagas
        .list_sagas(ListSagasRequest {
            page_size: 0,
            page_token: String::new(),
            state: State::Failed.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sagas;
    assert_eq!(failed.len(), 3);
    shop.stop().await;
}

#[tokio::test]
async fn the_happy_path_commits_and_completes_once_on_every_setup() {
    for (broker, backend) in setups() {
        the_happy_path_commits_and_completes_once(&broker, backend).await;
    }
}

#[tokio::test]
async fn a_decline_releases_and_fails_without_refund_on_every_setup() {
    for (broker, backend) in setups() {
        a_decline_releases_and_fails_without_refund(&broker, backend).await;
    }
}

#[tokio::test]
async fn a_shipment_failure_after_payment_refunds_once_on_every_setup() {
    for (broker, backend) in setups() {
        a_shipment_failure_after_payment_refunds_once(&broker, backend).await;
    }
}

#[tokio::test]
async fn a_charge_reported_after_the_order_failed_is_refunded_on_every_setup() {
    for (broker, backend) in setups() {
        a_charge_reported_after_the_order_failed_is_refunded(&broker, backend).await;
    }
}

#[tokio::test]
async fn any_order_of_events_gives_the_same_outcome_on_every_setup() {
    for (broker, backend) in setups() {
        any_order_of_events_gives_the_same_outcome(&broker, backend).await;
    }
}
