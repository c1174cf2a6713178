//! Payments over a real bus and real gRPC: each test card's outcome, attempts, the
//! provider's ledger, a repeated request, refunds, and that no card token leaks.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    events::metadata::subjects,
    proto::{
        events::{PaymentDeclined, PaymentFailed, PaymentRefunded, PaymentSucceeded},
        payments::{
            GetChargeRequest, GetRefundRequest, ListChargesRequest, ListRefundsRequest, charge,
        },
    },
};
use prost::Message;
use support::{MAX_ATTEMPTS, Published, order_id, order_of, payment_requested};
use tonic::Code;

fn decode<M: Message + Default>(published: &Published) -> M {
    M::decode(published.payload.clone()).unwrap()
}

fn no_token_logged() {
    let logs = support::captured_logs();
    let leaked: Vec<_> = logs
        .lines()
        .filter(|line| line.contains("tok_"))
        .take(3)
        .collect();
    assert!(leaked.is_empty(), "a card token was logged: {leaked:#?}");
}

#[tokio::test]
async fn approved_declined_and_unknown_cards() {
    for (broker, backend) in support::setups() {
        let mut payments = support::start(&broker, backend, "cards").await;
        let approved = order_id("approved");
        let declined = order_id("declined");
        let unknown = order_id("unknown");
        for (order, token) in [
            (&approved, "tok_visa_approved"),
            (&declined, "tok_visa_declined"),
            (&unknown, "tok_mastercard_anything"),
        ] {
            payments.publish(payment_requested(order, token).1).await;
        }
        let mut outcomes = Vec::new();
        while outcomes.len() < 3 {
            outcomes.push(payments.next_published().await);
        }
        let of = |order: &str| {
            outcomes
                .iter()
                .find(|p| order_of(p) == order)
                .unwrap_or_else(|| panic!("nothing published for {order}"))
                .clone()
        };

        let succeeded = of(&approved);
        assert_eq!(succeeded.subject, subjects::PAYMENT_SUCCEEDED);
        let succeeded: PaymentSucceeded = decode(&succeeded);
        assert_eq!(succeeded.amount, Some(support::euros(42)));
        let metadata = succeeded.metadata.unwrap();
        assert_eq!(metadata.producer, "payments");
        assert_eq!(metadata.correlation_id, approved);
        let charge = payments
            .client
            .get_charge(GetChargeRequest {
                name: format!("charges/{}", succeeded.charge_id),
            })
            .await
            .unwrap()
            .into_inner()
            .charge
            .unwrap();
        assert_eq!(
            charge.state(),
            charge::State::Succeeded,
            "{broker:?} {backend:?}"
        );
        assert_eq!(charge.order_id, approved);
        assert_eq!((charge.attempts, charge.card_brand.as_str()), (1, "visa"));
        assert!(charge.failure_reason.is_empty());
        assert!(!format!("{charge:?}").contains("tok_"));
        assert_eq!(
            payments.provider_charge(&approved).await,
            Some((1, Some("approved".to_owned())))
        );

        let declined_event = of(&declined);
        assert_eq!(declined_event.subject, subjects::PAYMENT_DECLINED);
        let declined_event: PaymentDeclined = decode(&declined_event);
        assert_eq!(declined_event.reason, "card declined");
        let unknown_event: PaymentDeclined = decode(&of(&unknown));
        assert_eq!(unknown_event.reason, "unknown card");

        // Listed oldest first, one order at a time or all, a page at a time.
        let list = |order_id: &str, page_token: String| ListChargesRequest {
            page_size: 1,
            page_token,
            order_id: order_id.to_owned(),
        };
        let page = payments
            .client
            .list_charges(list(&declined, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.charges.len(), 1);
        assert!(page.next_page_token.is_empty());
        let charge = &page.charges[0];
        assert_eq!(charge.state(), charge::State::Declined);
        assert_eq!(charge.failure_reason, "card declined");
        let (mut all, mut token) = (Vec::new(), String::new());
        loop {
            let page = payments
                .client
                .list_charges(list("", token))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.charges);
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let mut orders: Vec<_> = all.iter().map(|c| c.order_id.clone()).collect();
        orders.sort();
        let mut expected = vec![approved.clone(), declined.clone(), unknown.clone()];
        expected.sort();
        assert_eq!(orders, expected);
        let unknown_charge = all.iter().find(|c| c.order_id == unknown).unwrap();
        assert_eq!(unknown_charge.card_brand, "");
        payments.stop().await;
    }
    no_token_logged();
}

#[tokio::test]
async fn a_flaky_card_is_charged_once_on_the_third_attempt() {
    for (broker, backend) in support::setups() {
        let mut payments = support::start(&broker, backend, "flaky").await;
        let order = order_id("flaky");
        payments
            .publish(payment_requested(&order, "tok_visa_flaky").1)
            .await;
        let seen = payments
            .published_until(subjects::PAYMENT_SUCCEEDED, &order)
            .await;
        let failures: Vec<PaymentFailed> = seen
            .iter()
            .filter(|p| p.subject == subjects::PAYMENT_FAILED)
            .map(decode)
            .collect();
        assert_eq!(failures.len(), 2, "{broker:?} {backend:?}: {seen:?}");
        for (failure, attempt) in failures.iter().zip(1..) {
            assert_eq!(failure.attempt, attempt);
            assert!(failure.will_retry);
            assert_eq!(failure.reason, "the payment provider is unavailable");
        }
        // Each attempt's report is an event of its own.
        assert_ne!(seen[0].message_id, seen[1].message_id);
        let list = payments
            .client
            .list_charges(ListChargesRequest {
                order_id: order.clone(),
                ..ListChargesRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.charges.len(), 1);
        assert_eq!(list.charges[0].attempts, 3);
        assert_eq!(list.charges[0].state(), charge::State::Succeeded);
        let time = |t: Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos)).unwrap();
        // Dated from the first attempt, settled at the third.
        assert!(time(list.charges[0].create_time) < time(list.charges[0].update_time));
        assert_eq!(
            payments.provider_charge(&order).await,
            Some((3, Some("approved".to_owned())))
        );
        payments.stop().await;
    }
    no_token_logged();
}

#[tokio::test]
async fn a_card_that_never_answers_fails_after_the_last_attempt() {
    for (broker, backend) in support::setups() {
        let mut payments = support::start(&broker, backend, "timeout").await;
        let order = order_id("timeout");
        payments
            .publish(payment_requested(&order, "tok_visa_timeout").1)
            .await;
        let mut failures: Vec<PaymentFailed> = Vec::new();
        while failures.last().is_none_or(|f| f.will_retry) {
            let published = payments.next_published().await;
            assert_eq!(published.subject, subjects::PAYMENT_FAILED);
            failures.push(decode(&published));
        }
        let attempts: Vec<_> = failures.iter().map(|f| (f.attempt, f.will_retry)).collect();
        assert_eq!(
            attempts,
            [(1, true), (2, true), (3, true), (4, false)],
            "{broker:?} {backend:?}"
        );
        assert!(
            failures[3].reason.contains("did not answer"),
            "{:?}",
            failures[3]
        );
        let charge = payments
            .client
            .list_charges(ListChargesRequest {
                order_id: order.clone(),
                ..ListChargesRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .charges
            .pop()
            .unwrap();
        assert_eq!(charge.state(), charge::State::Failed);
        assert_eq!(charge.attempts, i32::try_from(MAX_ATTEMPTS).unwrap());
        assert_eq!(charge.card_brand, "");
        assert!(charge.failure_reason.contains("did not answer"));
        // The provider never answered, so nothing was charged.
        let (calls, outcome) = payments.provider_charge(&order).await.unwrap();
        assert_eq!((calls, outcome), (4, None));
        payments.stop().await;
    }
    no_token_logged();
}

#[tokio::test]
async fn a_payment_request_delivered_twice_charges_once() {
    for (broker, backend) in support::setups() {
        let mut payments = support::start(&broker, backend, "twice").await;
        let order = order_id("twice");
        let (_, request) = payment_requested(&order, "tok_visa_approved");
        // The same event twice under different message ids, so the broker keeps both.
        let mut again = request.clone();
        again.message_id = format!("{}-again", request.message_id);
        payments.publish(request).await;
        payments.publish(again).await;
        // One consumer takes events in order: once the marker's outcome is out, both
        // copies have been handled.
        let marker = order_id("marker");
        payments
            .publish(payment_requested(&marker, "tok_visa_declined").1)
            .await;
        let seen = payments
            .published_until(subjects::PAYMENT_DECLINED, &marker)
            .await;
        let charged: Vec<_> = seen.iter().filter(|p| order_of(p) == order).collect();
        assert_eq!(charged.len(), 1, "{broker:?} {backend:?}: {seen:?}");
        assert_eq!(charged[0].subject, subjects::PAYMENT_SUCCEEDED);
        assert_eq!(
            payments.provider_charge(&order).await,
            Some((1, Some("approved".to_owned())))
        );
        payments.stop().await;
    }
}

#[tokio::test]
async fn a_charge_is_refunded_once() {
    for (broker, backend) in support::setups() {
        let mut payments = support::start(&broker, backend, "refund").await;
        let order = order_id("refund");
        payments
            .publish(payment_requested(&order, "tok_visa_approved").1)
            .await;
        let seen = payments
            .published_until(subjects::PAYMENT_SUCCEEDED, &order)
            .await;
        let charge_id = decode::<PaymentSucceeded>(seen.last().unwrap()).charge_id;
        // Requested twice, as two events (an orchestrator that asked again).
        payments
            .publish(support::refund_requested(&order, &charge_id))
            .await;
        payments
            .publish(support::refund_requested(
                &order,
                &format!("charges/{charge_id}"),
            ))
            .await;
        let marker = order_id("marker");
        payments
            .publish(payment_requested(&marker, "tok_visa_declined").1)
            .await;
        let seen = payments
            .published_until(subjects::PAYMENT_DECLINED, &marker)
            .await;
        let refunds: Vec<PaymentRefunded> = seen
            .iter()
            .filter(|p| p.subject == subjects::PAYMENT_REFUNDED)
            .map(decode)
            .collect();
        assert_eq!(refunds.len(), 1, "{broker:?} {backend:?}: {seen:?}");
        assert_eq!(refunds[0].charge_id, charge_id);
        assert_eq!(refunds[0].amount, Some(support::euros(42)));
        assert_eq!(payments.provider_refund_calls(&charge_id).await, 1);
        let refund = payments
            .client
            .get_refund(GetRefundRequest {
                name: format!("refunds/{}", refunds[0].refund_id),
            })
            .await
            .unwrap()
            .into_inner()
            .refund
            .unwrap();
        assert_eq!(
            (refund.order_id.as_str(), refund.charge_id.as_str()),
            (order.as_str(), charge_id.as_str())
        );
        let listed = payments
            .client
            .list_refunds(ListRefundsRequest {
                order_id: order.clone(),
                ..ListRefundsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.refunds, vec![refund]);
        payments.stop().await;
    }
}

#[tokio::test]
async fn bad_names_and_pages_are_refused_and_unknown_ones_not_found() {
    let (broker, backend) = support::setups().remove(0);
    let mut payments = support::start(&broker, backend, "names").await;
    let client = &mut payments.client;
    for name in ["", "charges/", "charges/UPPER", "refunds/x"] {
        let fields = meshmart::testing::violated_fields(
            client
                .get_charge(GetChargeRequest {
                    name: name.to_owned(),
                })
                .await,
        );
        assert_eq!(fields, ["name"], "{name}");
    }
    let missing = client
        .get_charge(GetChargeRequest {
            name: "charges/nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = client
        .get_refund(GetRefundRequest {
            name: "refunds/nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let fields = meshmart::testing::violated_fields(
        client
            .list_refunds(ListRefundsRequest {
                page_size: -1,
                page_token: "not a token".to_owned(),
                order_id: "bad id!".to_owned(),
            })
            .await,
    );
    assert_eq!(fields, ["page_size", "page_token", "order_id"]);
    payments.stop().await;
}
