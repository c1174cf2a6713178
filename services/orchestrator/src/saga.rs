//! The saga of one order as a pure function: what an event does to it, which inventory
//! call that needs first, and what gets published. The consumer runs it twice per event:
//! on the saga as read, to know which call to make before the transaction, and on the
//! saga as locked in the transaction, to write the outcome; when the two disagree (another
//! event moved the saga in between) the event is tried again.

/// Where a saga stands (the proto's `Saga.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    AwaitingPayment,
    AwaitingShipment,
    Completed,
    Compensating,
    Failed,
}

impl State {
    pub const ALL: [Self; 5] = [
        Self::AwaitingPayment,
        Self::AwaitingShipment,
        Self::Completed,
        Self::Compensating,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::AwaitingShipment => "AWAITING_SHIPMENT",
            Self::Completed => "COMPLETED",
            Self::Compensating => "COMPENSATING",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == stored)
    }

    fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// A saga as stored, without its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    pub order_id: String,
    pub state: State,
    pub paid: bool,
    pub shipped: bool,
    pub charge_id: String,
    pub failure_reason: String,
    /// Whether a RefundRequested went out, so that the charge is refunded once.
    pub refund_requested: bool,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

impl Saga {
    /// The saga of an order whose first event just arrived, whichever it is.
    pub fn new(order_id: &str, now_ms: i64) -> Self {
        Self {
            order_id: order_id.to_owned(),
            state: State::AwaitingPayment,
            paid: false,
            shipped: false,
            charge_id: String::new(),
            failure_reason: String::new(),
            refund_requested: false,
            create_time_ms: now_ms,
            update_time_ms: now_ms,
        }
    }
}

/// An event of the order flow, as far as the saga reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    OrderCreated,
    PaymentSucceeded { charge_id: String },
    PaymentDeclined { reason: String },
    PaymentFailed { reason: String, will_retry: bool },
    ShipmentCreated,
    ShipmentFailed { reason: String },
    PaymentRefunded { refund_id: String },
}

impl Event {
    /// The step recorded for it.
    fn received(&self) -> String {
        match self {
            Self::OrderCreated => "OrderCreated received".to_owned(),
            Self::PaymentSucceeded { charge_id } => {
                format!("PaymentSucceeded received (charge {charge_id})")
            }
            Self::PaymentDeclined { .. } => "PaymentDeclined received".to_owned(),
            Self::PaymentFailed { will_retry, .. } => format!(
                "PaymentFailed received ({})",
                if *will_retry {
                    "payments retries"
                } else {
                    "final"
                }
            ),
            Self::ShipmentCreated => "ShipmentCreated received".to_owned(),
            Self::ShipmentFailed { .. } => "ShipmentFailed received".to_owned(),
            Self::PaymentRefunded { refund_id } => {
                format!("PaymentRefunded received (refund {refund_id})")
            }
        }
    }

    /// Why the order fails, if this event fails it.
    fn failure(&self) -> Option<String> {
        match self {
            Self::PaymentDeclined { reason } => Some(format!("payment declined: {reason}")),
            Self::PaymentFailed {
                reason,
                will_retry: false,
            } => Some(format!("payment failed: {reason}")),
            Self::ShipmentFailed { reason } => Some(format!("shipment failed: {reason}")),
            _ => None,
        }
    }
}

/// The inventory call an event needs before its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// CommitReservation: the order is paid and shipped.
    Commit,
    /// ReleaseReservation: the order fails.
    Release,
}

/// An event to publish, with the saga's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    OrderCompleted,
    OrderFailed { reason: String },
    RefundRequested { charge_id: String, reason: String },
}

/// What one event does to a saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub saga: Saga,
    /// The call that must have succeeded before `saga` is written.
    pub action: Action,
    pub publish: Vec<Publish>,
    /// What happened, in order, for GetSaga.
    pub steps: Vec<String>,
}

/// Applies `event` to `saga` (as it stands before), assuming `action` succeeds.
pub fn apply(saga: &Saga, event: &Event) -> Outcome {
    let mut next = saga.clone();
    let mut steps = vec![event.received()];
    let mut publish = Vec::new();
    let mut action = Action::None;
    let newly_paid = match event {
        Event::PaymentSucceeded { charge_id } if !next.paid => {
            next.paid = true;
            next.charge_id.clone_from(charge_id);
            true
        }
        _ => false,
    };
    if *event == Event::ShipmentCreated {
        next.shipped = true;
    }
    let failure = event.failure();
    if next.state.is_final() {
        if failure.is_some() {
            steps.push(format!(
                "ignored: the saga is already {}",
                next.state.as_str()
            ));
        }
        // The money must go back even when its event comes after the order failed.
        if next.state == State::Failed && newly_paid && !next.refund_requested {
            refund(&mut next, &mut publish, &mut steps);
        }
        return Outcome {
            saga: next,
            action,
            publish,
            steps,
        };
    }
    if let Some(reason) = failure.filter(|_| next.failure_reason.is_empty()) {
        next.failure_reason = reason;
    }
    if !next.failure_reason.is_empty() {
        // Failing, now or since an earlier release did not go through: release, then
        // fail, refunding whatever was charged.
        action = Action::Release;
        steps.push("reservation released".to_owned());
        next.state = State::Failed;
        if next.paid && !next.refund_requested {
            refund(&mut next, &mut publish, &mut steps);
        }
        publish.push(Publish::OrderFailed {
            reason: next.failure_reason.clone(),
        });
        steps.push("OrderFailed published".to_owned());
    } else if next.paid && next.shipped {
        action = Action::Commit;
        steps.push("reservation committed".to_owned());
        next.state = State::Completed;
        publish.push(Publish::OrderCompleted);
        steps.push("OrderCompleted published".to_owned());
    } else if next.paid {
        next.state = State::AwaitingShipment;
    }
    Outcome {
        saga: next,
        action,
        publish,
        steps,
    }
}

fn refund(saga: &mut Saga, publish: &mut Vec<Publish>, steps: &mut Vec<String>) {
    saga.refund_requested = true;
    let reason = if saga.failure_reason.is_empty() {
        "the order failed".to_owned()
    } else {
        saga.failure_reason.clone()
    };
    publish.push(Publish::RefundRequested {
        charge_id: saga.charge_id.clone(),
        reason,
    });
    steps.push(format!("refund requested (charge {})", saga.charge_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[Event]) -> (Saga, Vec<Publish>) {
        let mut saga = Saga::new("o", 0);
        let mut published = Vec::new();
        for event in events {
            let outcome = apply(&saga, event);
            saga = outcome.saga;
            published.extend(outcome.publish);
        }
        (saga, published)
    }

    fn paid() -> Event {
        Event::PaymentSucceeded {
            charge_id: "c1".to_owned(),
        }
    }

    #[test]
    fn paid_and_shipped_completes_in_either_order() {
        for events in [
            vec![Event::OrderCreated, paid(), Event::ShipmentCreated],
            vec![Event::ShipmentCreated, paid(), Event::OrderCreated],
        ] {
            let (saga, published) = run(&events);
            assert_eq!(saga.state, State::Completed);
            assert_eq!(published, vec![Publish::OrderCompleted]);
        }
    }

    #[test]
    fn a_decline_fails_without_refund_and_a_late_charge_is_refunded() {
        let declined = Event::PaymentDeclined {
            reason: "no".to_owned(),
        };
        let (saga, published) = run(&[Event::OrderCreated, declined.clone()]);
        assert_eq!(saga.state, State::Failed);
        assert_eq!(saga.failure_reason, "payment declined: no");
        assert_eq!(
            published,
            vec![Publish::OrderFailed {
                reason: "payment declined: no".to_owned()
            }]
        );
        let (_, published) = run(&[declined.clone(), paid(), paid(), declined]);
        assert_eq!(published.len(), 2, "{published:?}");
        assert!(
            matches!(&published[1], Publish::RefundRequested { charge_id, .. } if charge_id == "c1")
        );
    }

    #[test]
    fn a_retried_payment_failure_changes_nothing() {
        let retry = Event::PaymentFailed {
            reason: "timeout".to_owned(),
            will_retry: true,
        };
        let outcome = apply(&Saga::new("o", 0), &retry);
        assert_eq!(outcome.action, Action::None);
        assert_eq!(outcome.saga.state, State::AwaitingPayment);
        assert!(outcome.publish.is_empty());
    }

    #[test]
    fn compensating_retries_the_release_on_any_event() {
        let mut saga = Saga::new("o", 0);
        saga.state = State::Compensating;
        saga.failure_reason = "shipment failed: x".to_owned();
        saga.paid = true;
        saga.charge_id = "c1".to_owned();
        let outcome = apply(&saga, &Event::OrderCreated);
        assert_eq!(outcome.action, Action::Release);
        assert_eq!(outcome.saga.state, State::Failed);
        assert_eq!(outcome.publish.len(), 2);
    }
}
