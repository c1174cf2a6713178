//! The simulated card provider: the one outside system payments calls, and so the one call
//! whose time this code bounds itself (`PAYMENT_PROVIDER_TIMEOUT_MS`): it sits outside the
//! mesh, where no route timeout covers it.
//!
//! Like a real provider it is idempotent on a key (the order id for a charge, the charge id
//! for a refund): a second call with a key it has answered returns the first answer. So a
//! payments process that crashes after the provider charged and before its own commit
//! charges nothing more when the event comes back. Its ledger (`provider_charges`,
//! `provider_refunds`) lives in payments' database for the tests' sake, but is written in
//! transactions of its own, never inside payments', as an outside system's would be.
//!
//! The test cards, by token (documented in proto/meshmart/payments/v1/payments.proto):
//! - `tok_visa_approved`: approved.
//! - `tok_visa_declined`: declined, `card declined`.
//! - `tok_visa_flaky`: unavailable on the first two calls for a key, approved on the third.
//! - `tok_visa_timeout`: never answers; the caller's time limit ends the call.
//! - any other token: declined, `unknown card`, with no brand (the provider does not know
//!   the card).

use std::time::Duration;

use meshmart::db::{Pools, now_millis};

use crate::store::Amount;

/// `PAYMENT_PROVIDER_TIMEOUT_MS` when unset: the longest a customer's payment should wait
/// on one provider call; a call still unanswered then counts as a transient failure.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);

/// The flaky card fails this many calls for a key before it approves.
const FLAKY_FAILURES: i64 = 2;

/// What the provider decided about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved { card_brand: String },
    Declined { reason: String, card_brand: String },
}

/// Why the provider gave no answer: worth another attempt.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the payment provider is unavailable")]
    Unavailable,
    #[error("the payment provider did not answer within {0:?}")]
    TimedOut(Duration),
    /// The provider's own storage failed: to payments, one more way it is unavailable.
    #[error("the payment provider failed: {0}")]
    Ledger(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestCard {
    Approved,
    Declined,
    Flaky,
    Timeout,
    Unknown,
}

impl TestCard {
    fn of(token: &str) -> Self {
        match token {
            "tok_visa_approved" => Self::Approved,
            "tok_visa_declined" => Self::Declined,
            "tok_visa_flaky" => Self::Flaky,
            "tok_visa_timeout" => Self::Timeout,
            _ => Self::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    db: Pools,
    time_limit: Duration,
}

impl Provider {
    pub fn new(db: Pools, time_limit: Duration) -> Self {
        Self { db, time_limit }
    }

    /// Charges `amount` to the card `token` under `key`, within the time limit.
    pub async fn charge(
        &self,
        key: &str,
        amount: &Amount,
        token: &str,
    ) -> Result<Answer, ProviderError> {
        let card = TestCard::of(token);
        tokio::time::timeout(self.time_limit, self.charge_unbounded(key, amount, card))
            .await
            .map_err(|_| ProviderError::TimedOut(self.time_limit))?
    }

    /// Gives back `amount` of the charge `key`, within the time limit. Refunds always
    /// succeed at this provider.
    pub async fn refund(&self, key: &str, amount: &Amount) -> Result<(), ProviderError> {
        tokio::time::timeout(self.time_limit, self.refund_unbounded(key, amount))
            .await
            .map_err(|_| ProviderError::TimedOut(self.time_limit))?
    }

    async fn charge_unbounded(
        &self,
        key: &str,
        amount: &Amount,
        card: TestCard,
    ) -> Result<Answer, ProviderError> {
        let now = now_millis();
        let mut tx = self.db.write().begin().await?;
        let (calls, outcome, reason, card_brand): (i64, Option<String>, String, String) =
            sqlx::query_as(
                "INSERT INTO provider_charges (idempotency_key, calls, outcome, reason, card_brand, \
                   currency_code, amount_units, amount_nanos, create_time_ms, update_time_ms) \
                 VALUES ($1, 1, NULL, '', '', $2, $3, $4, $5, $5) \
                 ON CONFLICT (idempotency_key) DO UPDATE SET \
                   calls = provider_charges.calls + 1, update_time_ms = $5 \
                 RETURNING calls, outcome, reason, card_brand",
            )
            .bind(key)
            .bind(&amount.currency_code)
            .bind(amount.units)
            .bind(i64::from(amount.nanos))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        if let Some(outcome) = outcome {
            tx.commit().await?;
            return Ok(stored_answer(&outcome, reason, card_brand));
        }
        let answer = match card {
            TestCard::Flaky if calls <= FLAKY_FAILURES => {
                tx.commit().await?;
                return Err(ProviderError::Unavailable);
            }
            TestCard::Timeout => {
                tx.commit().await?;
                // Never answers: only the caller's time limit ends this.
                return std::future::pending().await;
            }
            TestCard::Approved | TestCard::Flaky => Answer::Approved {
                card_brand: "visa".to_owned(),
            },
            TestCard::Declined => Answer::Declined {
                reason: "card declined".to_owned(),
                card_brand: "visa".to_owned(),
            },
            TestCard::Unknown => Answer::Declined {
                reason: "unknown card".to_owned(),
                card_brand: String::new(),
            },
        };
        let (outcome, reason, card_brand) = match &answer {
            Answer::Approved { card_brand } => ("approved", "", card_brand),
            Answer::Declined { reason, card_brand } => ("declined", reason.as_str(), card_brand),
        };
        sqlx::query(
            "UPDATE provider_charges SET outcome = $2, reason = $3, card_brand = $4 \
             WHERE idempotency_key = $1",
        )
        .bind(key)
        .bind(outcome)
        .bind(reason)
        .bind(card_brand)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(answer)
    }

    async fn refund_unbounded(&self, key: &str, amount: &Amount) -> Result<(), ProviderError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO provider_refunds (idempotency_key, calls, currency_code, amount_units, \
               amount_nanos, create_time_ms, update_time_ms) \
             VALUES ($1, 1, $2, $3, $4, $5, $5) \
             ON CONFLICT (idempotency_key) DO UPDATE SET \
               calls = provider_refunds.calls + 1, update_time_ms = $5",
        )
        .bind(key)
        .bind(&amount.currency_code)
        .bind(amount.units)
        .bind(i64::from(amount.nanos))
        .bind(now)
        .execute(self.db.write())
        .await?;
        Ok(())
    }
}

fn stored_answer(outcome: &str, reason: String, card_brand: String) -> Answer {
    if outcome == "approved" {
        Answer::Approved { card_brand }
    } else {
        Answer::Declined { reason, card_brand }
    }
}
