//! What each notification says: short, friendly, plain text. Only what the events carry
//! that a customer should read goes in (an order id, an amount, a tracking number, a
//! reason); events that carry an address or a card token are not read here at all.

use meshmart::proto::google::r#type::Money;

use crate::store::Kind;

/// The longest reason quoted from an event: a reason is for reading, and a producer's bug
/// should not make a message of a page.
const MAX_REASON: usize = 300;

/// A notification's subject line and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    pub(crate) subject: String,
    pub(crate) body: String,
}

/// What the event said that the message quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detail {
    None,
    Amount(Option<Money>),
    TrackingNumber(String),
    Reason(String),
}

pub(crate) fn text(kind: Kind, order_id: &str, detail: &Detail) -> Text {
    let (subject, body) = match (kind, detail) {
        (Kind::OrderPlaced, Detail::Amount(total)) => (
            "We have your order".to_owned(),
            format!(
                "Thank you! Your order {order_id}{} is placed. We will let you know when it ships.",
                amount(total.as_ref()).map_or_else(String::new, |a| format!(" of {a}"))
            ),
        ),
        (Kind::PaymentDeclined, Detail::Reason(reason)) => (
            "Your payment was declined".to_owned(),
            format!(
                "We could not charge your card for order {order_id}: {}.",
                reason_text(reason)
            ),
        ),
        (Kind::OrderShipped, Detail::TrackingNumber(tracking)) if !tracking.is_empty() => (
            "Your order is on its way".to_owned(),
            format!("Order {order_id} has shipped. Tracking number: {tracking}."),
        ),
        (Kind::OrderShipped, _) => (
            "Your order is on its way".to_owned(),
            format!("Order {order_id} has shipped."),
        ),
        (Kind::OrderCompleted, _) => (
            "Your order is complete".to_owned(),
            format!("Order {order_id} is paid and shipped. Thank you for shopping with us!"),
        ),
        (Kind::OrderFailed, Detail::Reason(reason)) => (
            "We could not complete your order".to_owned(),
            format!(
                "Order {order_id} will not go ahead: {}. Anything you paid will be refunded.",
                reason_text(reason)
            ),
        ),
        (Kind::RefundIssued, Detail::Amount(refunded)) => (
            "Your refund is on its way".to_owned(),
            format!(
                "We refunded {} for order {order_id}.",
                amount(refunded.as_ref()).unwrap_or_else(|| "your payment".to_owned())
            ),
        ),
        // A detail that does not match its kind cannot come from the consumer; say the
        // least that is still true.
        (kind, _) => (
            "An update on your order".to_owned(),
            format!(
                "There is news about order {order_id}: {}.",
                kind.label().replace('_', " ")
            ),
        ),
    };
    Text { subject, body }
}

fn reason_text(reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    if reason.is_empty() {
        return "no reason was given".to_owned();
    }
    let mut cut: String = reason.chars().take(MAX_REASON).collect();
    if cut.len() < reason.len() {
        cut.push('…');
    }
    cut
}

/// `12.50 EUR`; `None` when there is no amount to show.
fn amount(money: Option<&Money>) -> Option<String> {
    let money = money.filter(|m| !m.currency_code.is_empty())?;
    let negative = money.units < 0 || money.nanos < 0;
    let cents = money.nanos.unsigned_abs() / 10_000_000;
    Some(format!(
        "{}{}.{cents:02} {}",
        if negative { "-" } else { "" },
        money.units.unsigned_abs(),
        money.currency_code
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_money() {
        let money = |units, nanos| Money {
            currency_code: "EUR".to_owned(),
            units,
            nanos,
        };
        assert_eq!(amount(Some(&money(12, 500_000_000))).unwrap(), "12.50 EUR");
        assert_eq!(amount(Some(&money(0, 70_000_000))).unwrap(), "0.07 EUR");
        assert_eq!(amount(Some(&money(-3, -10_000_000))).unwrap(), "-3.01 EUR");
        assert_eq!(amount(None), None);
    }

    #[test]
    fn reasons_are_quoted_short() {
        let long = "x".repeat(1000);
        let text = text(Kind::OrderFailed, "o-1", &Detail::Reason(long));
        assert!(text.body.len() < 500, "{}", text.body);
        let text = super::text(Kind::PaymentDeclined, "o-1", &Detail::Reason(String::new()));
        assert!(text.body.contains("no reason was given"), "{}", text.body);
    }
}
