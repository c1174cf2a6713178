//! Checks of requests (INVALID_ARGUMENT, every problem at once) and of incoming events
//! (a permanent handler error: an event that contradicts itself never succeeds).

use meshmart::{
    events::HandlerError,
    proto::{events::EventMetadata, google::r#type::Money},
    validation::{invalid_field, is_idempotency_key, is_resource_id},
};
use tonic::Status;

use crate::store::{Amount, Page};

/// The id in a `{collection}/{id}` name.
pub(crate) fn resource_name(name: &str, collection: &str) -> Result<String, Status> {
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| is_resource_id(id))
        .map(str::to_owned)
        .ok_or_else(|| invalid_field("name", &format!("must be {collection}/{{id}}")))
}

/// The page a List call asks for.
pub(crate) fn page(
    page_size: i32,
    page_token: &str,
    order_id: &str,
    method: &str,
) -> Result<Page, Status> {
    meshmart::page_token::order_page(page_size, page_token, order_id, method)
}

/// An event's metadata, which every handler needs whole.
pub(crate) fn metadata(metadata: Option<&EventMetadata>) -> Result<&EventMetadata, HandlerError> {
    let metadata =
        metadata.ok_or_else(|| HandlerError::Permanent("the event has no metadata".to_owned()))?;
    if metadata.event_id.is_empty() || !is_idempotency_key(&metadata.order_id) {
        return Err(HandlerError::Permanent(
            "the event's metadata lacks an event id or a valid order id".to_owned(),
        ));
    }
    Ok(metadata)
}

/// The amount a PaymentRequested asks for: a currency and more than nothing.
pub(crate) fn amount(amount: Option<&Money>) -> Result<Amount, HandlerError> {
    let invalid = |why: &str| HandlerError::Permanent(format!("the amount {why}"));
    let money = amount.ok_or_else(|| invalid("is missing"))?;
    if money.currency_code.len() != 3
        || !money.currency_code.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(invalid("needs a three-letter currency code"));
    }
    if !(0..1_000_000_000).contains(&money.nanos) || money.units < 0 {
        return Err(invalid("must be positive, with nanos from 0 to 999999999"));
    }
    if money.units == 0 && money.nanos == 0 {
        return Err(invalid("must be more than zero"));
    }
    Ok(Amount {
        currency_code: money.currency_code.clone(),
        units: money.units,
        nanos: money.nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_amounts() {
        assert_eq!(resource_name("charges/ab-1", "charges").unwrap(), "ab-1");
        for bad in [
            "charges/",
            "charges",
            "refunds/ab",
            "charges/AB",
            "chargesx/ab",
        ] {
            assert!(resource_name(bad, "charges").is_err(), "{bad}");
        }
        let money = |currency: &str, units, nanos| Money {
            currency_code: currency.to_owned(),
            units,
            nanos,
        };
        assert!(amount(Some(&money("EUR", 12, 500_000_000))).is_ok());
        for bad in [
            money("EUR", 0, 0),
            money("EUR", -1, 0),
            money("EUR", 1, -1),
            money("eur", 1, 0),
            money("EURO", 1, 0),
        ] {
            assert!(amount(Some(&bad)).is_err(), "{bad:?}");
        }
        assert!(amount(None).is_err());
    }
}
