//! Request checks. Each returns every problem at once as INVALID_ARGUMENT.

use meshmart::{
    proto::orchestrator::{ListDeadLettersRequest, ListSagasRequest, saga},
    validation::{FieldViolations, invalid_field, is_idempotency_key},
};
use tonic::Status;

use crate::saga::State;

pub(crate) const DEFAULT_PAGE_SIZE: usize = 20;
pub(crate) const MAX_PAGE_SIZE: usize = 100;

/// The order id in a `sagas/{order_id}` name.
pub(crate) fn saga_name(name: &str) -> Result<String, Status> {
    name.strip_prefix("sagas/")
        .filter(|id| is_idempotency_key(id))
        .map(str::to_owned)
        .ok_or_else(|| invalid_field("name", "must be sagas/{order_id}"))
}

/// The id in a `deadLetters/{dead_letter_id}` name.
pub(crate) fn dead_letter_name(name: &str) -> Result<u64, Status> {
    name.strip_prefix("deadLetters/")
        .and_then(decimal_id)
        .ok_or_else(|| invalid_field("name", "must be deadLetters/{dead_letter_id}, a decimal id"))
}

fn decimal_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn page_size(violations: &mut FieldViolations, page_size: i32) -> usize {
    violations.check(page_size >= 0, "page_size", "must not be negative");
    match usize::try_from(page_size).unwrap_or_default() {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    }
}

/// A page of sagas: of which state (or all), after which order, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SagaPage {
    pub(crate) state: Option<State>,
    pub(crate) after: Option<String>,
    pub(crate) size: usize,
}

pub(crate) fn list_sagas(request: &ListSagasRequest) -> Result<SagaPage, Status> {
    let mut violations = FieldViolations::new();
    let size = page_size(&mut violations, request.page_size);
    let state = match saga::State::try_from(request.state) {
        Ok(saga::State::Unspecified) => None,
        Ok(saga::State::AwaitingPayment) => Some(State::AwaitingPayment),
        Ok(saga::State::AwaitingShipment) => Some(State::AwaitingShipment),
        Ok(saga::State::Completed) => Some(State::Completed),
        Ok(saga::State::Compensating) => Some(State::Compensating),
        Ok(saga::State::Failed) => Some(State::Failed),
        Err(_) => {
            violations.add("state", "is not a saga state");
            None
        }
    };
    let after = token(&mut violations, &request.page_token, "ListSagas");
    violations.into_result()?;
    Ok(SagaPage { state, after, size })
}

/// A page of dead letters: of which group (or all), after which id, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetterPage {
    pub(crate) consumer: Option<String>,
    pub(crate) after: Option<u64>,
    pub(crate) size: usize,
}

pub(crate) fn list_dead_letters(
    request: &ListDeadLettersRequest,
) -> Result<DeadLetterPage, Status> {
    let mut violations = FieldViolations::new();
    let size = page_size(&mut violations, request.page_size);
    violations.check(
        request.consumer.is_empty() || is_idempotency_key(&request.consumer),
        "consumer",
        "must be a consumer group's name, for example payments",
    );
    let after = token(&mut violations, &request.page_token, "ListDeadLetters")
        .map(|after| decimal_id(&after));
    let after = match after {
        Some(None) => {
            violations.add(
                "page_token",
                "is not a token from an earlier ListDeadLetters call",
            );
            None
        }
        Some(Some(id)) => Some(id),
        None => None,
    };
    violations.into_result()?;
    Ok(DeadLetterPage {
        consumer: Some(request.consumer.clone()).filter(|c| !c.is_empty()),
        after,
        size,
    })
}

fn token(violations: &mut FieldViolations, token: &str, call: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let after = meshmart::page_token::decode(token);
    if after.is_none() {
        violations.add(
            "page_token",
            format!("is not a token from an earlier {call} call"),
        );
    }
    after
}
