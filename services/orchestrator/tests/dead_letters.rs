//! Dead letters end to end: a poison event is given up on while the next is handled; the
//! DeadLetterService lists and shows dead letters without a payment token; an event given
//! up on while inventory was down completes when replayed after inventory is back.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::{
    events::{Consumer, ConsumerConfig, EventBus, Outgoing, metadata::subjects},
    proto::{
        events::PaymentRequested,
        inventory::ReservationState,
        orchestrator::{
            DeadLetter, GetDeadLetterRequest, ListDeadLettersRequest, ReplayDeadLetterRequest,
            saga::State,
        },
    },
    testing::{Backend, Broker, setups},
};
use support::*;
use tonic::Code;

async fn dead_letters_of(shop: &mut Shop, consumer: &str, at_least: usize) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let letters = shop
            .dead_letters
            .list_dead_letters(ListDeadLettersRequest {
                page_size: 100,
                page_token: String::new(),
                consumer: consumer.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .dead_letters;
        if letters.len() >= at_least {
            return letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumer}: {letters:?} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_poison_event_is_dead_lettered_and_the_next_is_handled(
    broker: &Broker,
    backend: Backend,
) {
    let mut shop = start(broker, backend, "poison", 3).await;
    let poison = Outgoing {
        subject: subjects::ORDER_CREATED.to_owned(),
        message_id: "poison-1".to_owned(),
        headers: Default::default(),
        payload: vec![0xff, 0xff, 0xff].into(),
    };
    shop.publish(poison).await;
    let order = "order-after-poison";
    shop.reserve(order).await;
    shop.publish(created(order)).await;
    shop.saga_until(order, |s| s.state() == State::AwaitingPayment)
        .await;
    let letters = dead_letters_of(&mut shop, "orchestrator", 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.consumer, "orchestrator");
    assert_eq!(letter.subject, subjects::ORDER_CREATED);
    assert_eq!(letter.message_id, "poison-1");
    assert_eq!(letter.event_type, "meshmart.events.v1.OrderCreated");
    // A payload that does not decode shows none; it can never succeed, so one attempt.
    assert_eq!(letter.payload_json, "");
    assert_eq!(letter.attempts, 1);
    assert!(letter.error.contains("decode"), "{}", letter.error);
    assert_eq!(
        letter.name,
        format!("deadLetters/{}", letter.dead_letter_id)
    );
    shop.stop().await;
}

async fn a_dead_letter_never_shows_a_payment_token(broker: &Broker, backend: Backend) {
    let mut shop = start(broker, backend, "token", 3).await;
    // Payments' group gives up on a PaymentRequested (as its consumer loop would).
    let group = ConsumerConfig::with_defaults("payments", &[subjects::PAYMENT_REQUESTED]);
    let mut payments = shop.bus.consumer(&group).await.unwrap();
    let metadata = metadata("order-token");
    let event = PaymentRequested {
        metadata: Some(metadata.clone()),
        amount: None,
        payment_token: "tok_visa_approved".to_owned(),
    };
    shop.publish(meshmart::events::metadata::outgoing(
        subjects::PAYMENT_REQUESTED,
        &metadata,
        &event,
    ))
    .await;
    let delivery = tokio::time::timeout(WAIT, payments.next())
        .await
        .unwrap()
        .unwrap();
    shop.bus
        .dead_letter("payments", delivery, "the provider is on fire")
        .await
        .unwrap();

    let letters = dead_letters_of(&mut shop, "payments", 1).await;
    assert!(
        dead_letters_of(&mut shop, "orchestrator", 0)
            .await
            .is_empty()
    );
    let shown = shop
        .dead_letters
        .get_dead_letter(GetDeadLetterRequest {
            name: letters[0].name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(shown, letters[0]);
    assert_eq!(shown.event_type, "meshmart.events.v1.PaymentRequested");
    assert_eq!(shown.error, "the provider is on fire");
    assert!(!format!("{shown:?}").contains("tok_visa"), "{shown:?}");
    let json: serde_json::Value = serde_json::from_str(&shown.payload_json).unwrap();
    assert_eq!(json["paymentToken"], "[redacted]");
    assert_eq!(json["metadata"]["orderId"], "order-token");

    for name in ["deadLetters/999999", "deadLetters/x", "letters/1"] {
        let status = shop
            .dead_letters
            .get_dead_letter(GetDeadLetterRequest {
                name: name.to_owned(),
            })
            .await
            .unwrap_err();
        let expected = if name.ends_with("999999") {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(status.code(), expected, "{name}: {status:?}");
    }
    shop.stop().await;
}

async fn an_event_given_up_on_while_inventory_was_down_completes_on_replay(
    broker: &Broker,
    backend: Backend,
) {
    let mut shop = start(broker, backend, "inventory_down", 3).await;
    let order = "order-inventory-down";
    shop.reserve(order).await;
    shop.publish(created(order)).await;
    shop.publish(paid(order)).await;
    shop.saga_until(order, |s| s.paid).await;
    shop.stop_inventory().await;
    shop.publish(shipped(order)).await;
    let letters = dead_letters_of(&mut shop, "orchestrator", 1).await;
    let letter = letters[0].clone();
    assert_eq!(letter.subject, subjects::SHIPMENT_CREATED);
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.error.contains("inventory could not commit"),
        "{}",
        letter.error
    );
    let json: serde_json::Value = serde_json::from_str(&letter.payload_json).unwrap();
    assert_eq!(json["trackingNumber"], "TRACK-1");
    let saga = shop.saga_until(order, |s| s.paid).await;
    assert_eq!(saga.state(), State::AwaitingShipment);

    shop.restart_inventory().await;
    let replayed = shop
        .dead_letters
        .replay_dead_letter(ReplayDeadLetterRequest {
            name: letter.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(replayed, letter);
    let saga = shop
        .saga_until(order, |s| s.state() == State::Completed)
        .await;
    assert!(saga.shipped);
    assert_eq!(shop.reservation(order).await, ReservationState::Committed);
    // Gone once replayed: a second replay is NOT_FOUND, which the caller takes as done.
    let status = shop
        .dead_letters
        .replay_dead_letter(ReplayDeadLetterRequest { name: letter.name })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        dead_letters_of(&mut shop, "orchestrator", 0)
            .await
            .is_empty()
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_the_next_is_handled_on_every_setup() {
    for (broker, backend) in setups() {
        a_poison_event_is_dead_lettered_and_the_next_is_handled(&broker, backend).await;
    }
}

#[tokio::test]
async fn a_dead_letter_never_shows_a_payment_token_on_every_setup() {
    for (broker, backend) in setups() {
        a_dead_letter_never_shows_a_payment_token(&broker, backend).await;
    }
}

#[tokio::test]
async fn an_event_given_up_on_while_inventory_was_down_completes_on_replay_on_every_setup() {
    for (broker, backend) in setups() {
        an_event_given_up_on_while_inventory_was_down_completes_on_replay(&broker, backend).await;
    }
}
