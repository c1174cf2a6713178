//! The consumer group `payments`: charges orders on PaymentRequested, refunds charges on
//! RefundRequested, and publishes what happened through the outbox.
//!
//! A charge's attempts are the deliveries of its PaymentRequested: a transient failure
//! before the last attempt is reported (PaymentFailed, `will_retry`) in a transaction that
//! leaves the event unrecorded, and the handler answers Transient so the event comes back
//! after the group's backoff. The outcome (approved, declined, or failed at the last
//! attempt) is settled once, with `apply_once`.

use meshmart::{
    db::{Pools, is_transient, now_millis},
    events::{
        HandlerError, Incoming,
        inbox::apply_once,
        metadata::{self, caused_by, outgoing, subjects},
        outbox::Outbox,
    },
    proto::{
        events::{
            EventMetadata, PaymentDeclined, PaymentFailed, PaymentRefunded, PaymentRequested,
            PaymentSucceeded, RefundRequested,
        },
        google::r#type::Money,
    },
};

use crate::{
    Error,
    metrics::Metrics,
    provider::{Answer, Provider, ProviderError},
    store::{
        Amount, ChargeRecord, ChargeState, NewCharge, NewRefund, Store, insert_charge,
        insert_refund, record_failed_attempt,
    },
    validate,
};

/// The consumer group's name, which is also the inbox's.
pub(crate) const GROUP: &str = "payments";
/// What payments signs its events with.
const PRODUCER: &str = "payments";

#[derive(Debug, Clone)]
pub(crate) struct Handlers {
    pub(crate) store: Store,
    pub(crate) outbox: Outbox,
    pub(crate) provider: Provider,
    pub(crate) metrics: Metrics,
    /// The group's `max_attempts`: the attempt at which payments gives up on a charge.
    pub(crate) max_attempts: u32,
}

/// How a charge was settled.
#[derive(Debug)]
enum Outcome {
    Succeeded { card_brand: String },
    Declined { reason: String, card_brand: String },
    Failed { reason: String },
}

impl meshmart::events::EventHandler for Handlers {
    /// Handles one delivery, in the trace context it carried and in a span naming its order.
    async fn handle(&self, incoming: Incoming) -> Result<(), HandlerError> {
        match incoming.subject.as_str() {
            subjects::PAYMENT_REQUESTED => {
                let event: PaymentRequested = metadata::decode(&incoming)?;
                let cause = validate::metadata(event.metadata.as_ref())?.clone();
                metadata::within(
                    &incoming,
                    &cause,
                    self.charge(&cause, incoming.attempt, event),
                )
                .await
            }
            subjects::REFUND_REQUESTED => {
                let event: RefundRequested = metadata::decode(&incoming)?;
                let cause = validate::metadata(event.metadata.as_ref())?.clone();
                metadata::within(&incoming, &cause, self.refund(&cause, event)).await
            }
            other => Err(HandlerError::Permanent(format!(
                "payments does not handle {other}"
            ))),
        }
    }
}

impl Handlers {
    fn db(&self) -> &Pools {
        self.store.pools()
    }

    async fn charge(
        &self,
        cause: &EventMetadata,
        attempt: u32,
        request: PaymentRequested,
    ) -> Result<(), HandlerError> {
        let amount = validate::amount(request.amount.as_ref())?;
        let order_id = cause.order_id.as_str();
        if self
            .store
            .charge_of_order(order_id)
            .await
            .map_err(failed)?
            .is_some()
        {
            // Settled by an earlier delivery or another event for the order: only recorded.
            self.record_only(cause).await?;
            return Ok(());
        }
        // The token goes to the provider and nowhere else: not into a log, a row or an event.
        let answer = self
            .provider
            .charge(order_id, &amount, &request.payment_token)
            .await;
        drop(request);
        let outcome = match answer {
            Ok(Answer::Approved { card_brand }) => Outcome::Succeeded { card_brand },
            Ok(Answer::Declined { reason, card_brand }) => Outcome::Declined { reason, card_brand },
            Err(error) if attempt < self.max_attempts => {
                return Err(self.report_failed_attempt(cause, attempt, &error).await);
            }
            Err(error) => Outcome::Failed {
                reason: error.to_string(),
            },
        };
        self.settle(cause, attempt, &amount, outcome).await
    }

    /// Reports a transient failure once per attempt, without recording the event as
    /// applied, and answers the error that has it delivered again. The PaymentFailed's id
    /// is derived from the order and the attempt, so a redelivery of the same attempt
    /// (a crash between this commit and the nak) cannot report it twice, here or at the
    /// broker.
    async fn report_failed_attempt(
        &self,
        cause: &EventMetadata,
        attempt: u32,
        error: &ProviderError,
    ) -> HandlerError {
        let reason = error.to_string();
        tracing::warn!(attempt, error = %reason, "charge attempt failed; trying again");
        self.metrics.payment_outcome("transient");
        let mut metadata = caused_by(cause, PRODUCER);
        metadata.event_id = attempt_event_id(&cause.order_id, attempt);
        let event = PaymentFailed {
            metadata: Some(metadata.clone()),
            reason: reason.clone(),
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            will_retry: true,
        };
        let reported = async {
            let mut tx = self.db().write().begin().await?;
            if record_failed_attempt(&mut tx, &cause.order_id, attempt, &reason, now_millis())
                .await?
            {
                Outbox::add(
                    &mut tx,
                    &outgoing(subjects::PAYMENT_FAILED, &metadata, &event),
                )
                .await?;
            }
            tx.commit().await?;
            self.outbox.committed();
            Ok::<_, sqlx::Error>(())
        };
        match reported.await {
            Ok(()) => HandlerError::Transient(reason),
            Err(error) => failed(error.into()),
        }
    }

    async fn settle(
        &self,
        cause: &EventMetadata,
        attempt: u32,
        amount: &Amount,
        outcome: Outcome,
    ) -> Result<(), HandlerError> {
        let charge_id = uuid::Uuid::new_v4().to_string();
        let metadata = caused_by(cause, PRODUCER);
        let (state, failure_reason, card_brand) = match &outcome {
            Outcome::Succeeded { card_brand } => (ChargeState::Succeeded, "", card_brand.as_str()),
            Outcome::Declined { reason, card_brand } => {
                (ChargeState::Declined, reason.as_str(), card_brand.as_str())
            }
            Outcome::Failed { reason } => (ChargeState::Failed, reason.as_str(), ""),
        };
        let charge = NewCharge {
            charge_id: &charge_id,
            order_id: &cause.order_id,
            amount,
            state,
            failure_reason,
            attempts: attempt,
            card_brand,
            now_ms: now_millis(),
        };
        let event = match &outcome {
            Outcome::Succeeded { .. } => outgoing(
                subjects::PAYMENT_SUCCEEDED,
                &metadata,
                &PaymentSucceeded {
                    metadata: Some(metadata.clone()),
                    charge_id: charge_id.clone(),
                    amount: Some(money(amount)),
                },
            ),
            Outcome::Declined { reason, .. } => outgoing(
                subjects::PAYMENT_DECLINED,
                &metadata,
                &PaymentDeclined {
                    metadata: Some(metadata.clone()),
                    reason: reason.clone(),
                },
            ),
            Outcome::Failed { reason } => outgoing(
                subjects::PAYMENT_FAILED,
                &metadata,
                &PaymentFailed {
                    metadata: Some(metadata.clone()),
                    reason: reason.clone(),
                    attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
                    will_retry: false,
                },
            ),
        };
        let mut settled = false;
        apply_once(
            self.db(),
            &self.outbox,
            GROUP,
            &cause.event_id,
            async |tx| {
                settled = insert_charge(tx, &charge).await?;
                Ok::<_, sqlx::Error>(if settled { vec![event] } else { Vec::new() })
            },
        )
        .await
        .map_err(|error| failed(error.into()))?;
        if settled {
            self.metrics.payment_outcome(match outcome {
                Outcome::Succeeded { .. } => "approved",
                Outcome::Declined { .. } => "declined",
                Outcome::Failed { .. } => "failed",
            });
        }
        Ok(())
    }

    async fn refund(
        &self,
        cause: &EventMetadata,
        request: RefundRequested,
    ) -> Result<(), HandlerError> {
        let charge_id = request
            .charge_id
            .strip_prefix("charges/")
            .unwrap_or(&request.charge_id);
        let charge = match self.store.charge(charge_id).await {
            Ok(charge) => charge,
            Err(Error::ChargeNotFound(id)) => {
                return Err(HandlerError::Permanent(format!("there is no charge {id}")));
            }
            Err(error) => return Err(failed(error)),
        };
        refundable(cause, &charge)?;
        if self
            .store
            .refund_of_charge(charge_id)
            .await
            .map_err(failed)?
            .is_some()
        {
            self.record_only(cause).await?;
            return Ok(());
        }
        self.provider
            .refund(charge_id, &charge.amount)
            .await
            .map_err(|error| HandlerError::Transient(error.to_string()))?;
        let refund_id = uuid::Uuid::new_v4().to_string();
        let metadata = caused_by(cause, PRODUCER);
        let event = outgoing(
            subjects::PAYMENT_REFUNDED,
            &metadata,
            &PaymentRefunded {
                metadata: Some(metadata.clone()),
                charge_id: charge.charge_id.clone(),
                refund_id: refund_id.clone(),
                amount: Some(money(&charge.amount)),
            },
        );
        let refund = NewRefund {
            refund_id: &refund_id,
            charge_id: &charge.charge_id,
            order_id: &charge.order_id,
            amount: &charge.amount,
            reason: &request.reason,
            now_ms: now_millis(),
        };
        let mut refunded = false;
        apply_once(
            self.db(),
            &self.outbox,
            GROUP,
            &cause.event_id,
            async |tx| {
                refunded = insert_refund(tx, &refund).await?;
                Ok::<_, sqlx::Error>(if refunded { vec![event] } else { Vec::new() })
            },
        )
        .await
        .map_err(|error| failed(error.into()))?;
        if refunded {
            self.metrics.refunds.inc();
        }
        Ok(())
    }

    /// Records the event as applied, with no effect: it repeats what is already done.
    async fn record_only(&self, cause: &EventMetadata) -> Result<(), HandlerError> {
        apply_once(
            self.db(),
            &self.outbox,
            GROUP,
            &cause.event_id,
            async |_| Ok::<_, sqlx::Error>(Vec::new()),
        )
        .await
        .map(drop)
        .map_err(|error| failed(error.into()))
    }
}

/// Only a succeeded charge of the order the request is about can be refunded.
fn refundable(cause: &EventMetadata, charge: &ChargeRecord) -> Result<(), HandlerError> {
    if charge.order_id != cause.order_id {
        return Err(HandlerError::Permanent(format!(
            "charge {} belongs to another order",
            charge.charge_id
        )));
    }
    if charge.state != ChargeState::Succeeded {
        return Err(HandlerError::Permanent(format!(
            "charge {} is {}: nothing was charged to refund",
            charge.charge_id,
            charge.state.as_str()
        )));
    }
    Ok(())
}

/// A store failure as the handler reports it: a database that is busy or out of reach may
/// answer next time; anything else will not, and goes to the dead letters with its error.
fn failed(error: Error) -> HandlerError {
    match error {
        Error::Failure(meshmart::status::Failure::Database(error)) if !is_transient(&error) => {
            HandlerError::Permanent(format!("database: {error}"))
        }
        error => HandlerError::Transient(error.to_string()),
    }
}

/// The event id of the PaymentFailed reporting `attempt` of `order_id`: the same for every
/// delivery of that attempt, and a valid UUID (version 8, from SHA-256).
fn attempt_event_id(order_id: &str, attempt: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(b"payments.failed\0");
    digest.update(order_id.as_bytes());
    digest.update(b"\0");
    digest.update(attempt.to_be_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest.finalize()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn money(amount: &Amount) -> Money {
    Money {
        currency_code: amount.currency_code.clone(),
        units: amount.units,
        nanos: amount.nanos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_are_stable_per_attempt_and_differ_between_attempts() {
        let first = attempt_event_id("order-1", 1);
        assert_eq!(first, attempt_event_id("order-1", 1));
        assert_ne!(first, attempt_event_id("order-1", 2));
        assert_ne!(first, attempt_event_id("order-2", 1));
        assert!(uuid::Uuid::parse_str(&first).is_ok());
    }
}
