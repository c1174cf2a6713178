//! Request checks. Each returns every problem at once as INVALID_ARGUMENT. No description
//! quotes what was sent: a request carries a payment token and an address.

use std::collections::HashSet;

use meshmart::{
    page_token::PageTokens,
    proto::orders::{CreateOrderRequest, ListOrdersRequest, ShippingAddress},
    validation::{FieldViolations, invalid_field, is_idempotency_key, is_resource_id},
};
use tonic::Status;

use crate::store::Cursor;

pub(crate) const MAX_LINES: usize = 20;
pub(crate) const MAX_QUANTITY: i64 = 100;
pub(crate) const MAX_REQUEST_ID: usize = 100;
/// Longest payment token accepted. Providers' tokens are a few dozen characters.
pub(crate) const MAX_PAYMENT_TOKEN: usize = 200;
const MAX_ADDRESS_LINES: usize = 3;

/// ListOrders' page tokens: the cursor is the last order of the page, as
/// `<create_time_ms>.<order_id>` (newest first, so the next page is what is older).
pub(crate) const PAGE_TOKENS: PageTokens = PageTokens::new(20 + 63, is_cursor);

/// The token of the page after `last`.
pub(crate) fn page_token(last: &Cursor) -> String {
    PAGE_TOKENS.encode(&format!("{}.{}", last.create_time_ms, last.order_id))
}

fn parse_cursor(cursor: &str) -> Option<Cursor> {
    let (time, order_id) = cursor.split_once('.')?;
    let digits = !time.is_empty() && time.len() <= 19 && time.bytes().all(|b| b.is_ascii_digit());
    Some(Cursor {
        create_time_ms: time.parse().ok().filter(|_| digits)?,
        order_id: Some(order_id).filter(|id| is_resource_id(id))?.to_owned(),
    })
}

fn is_cursor(cursor: &str) -> bool {
    parse_cursor(cursor).is_some()
}

/// A CreateOrder request that passed every check. Its `Debug` leaves out the payment
/// token and the address, so no log line can carry them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct NewOrderRequest {
    pub(crate) request_id: String,
    /// `(product_id, quantity)`, in the order of the request, each product once.
    pub(crate) lines: Vec<(String, i64)>,
    pub(crate) payment_token: String,
    pub(crate) address: ShippingAddress,
}

impl std::fmt::Debug for NewOrderRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewOrderRequest")
            .field("request_id", &self.request_id)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

/// The id in an `orders/{order_id}` name. Any resource id is accepted: one that names no
/// order is NOT_FOUND, as for an order of another customer.
pub(crate) fn order_name(field: &str, name: &str) -> Result<String, Status> {
    name.strip_prefix("orders/")
        .filter(|id| is_resource_id(id))
        .map(str::to_owned)
        .ok_or_else(|| invalid_field(field, "must be orders/{order_id}"))
}

/// The page to read: after which order, and how many.
pub(crate) fn list(request: &ListOrdersRequest) -> Result<(Option<Cursor>, usize), Status> {
    let mut violations = FieldViolations::new();
    let (after, size) = PAGE_TOKENS.page(
        request.page_size,
        &request.page_token,
        "ListOrders",
        &mut violations,
    );
    violations.into_result()?;
    // A token decodes only to a cursor `is_cursor` accepts, which parses.
    Ok((after.as_deref().and_then(parse_cursor), size))
}

/// Checks a CreateOrder request; the lines' `unit_price` is ignored, as documented.
pub(crate) fn create(request: &CreateOrderRequest) -> Result<NewOrderRequest, Status> {
    let mut violations = FieldViolations::new();
    violations.check(
        request.request_id.len() <= MAX_REQUEST_ID && is_idempotency_key(&request.request_id),
        "request_id",
        "must be 1 to 100 letters, digits or ._:-",
    );
    lines(&mut violations, request);
    violations.check(
        is_payment_token(&request.payment_token),
        "payment_token",
        "must be a token of 1 to 200 visible ASCII characters",
    );
    match &request.shipping_address {
        None => {
            violations.add("shipping_address", "is required");
        }
        Some(address) => shipping_address(&mut violations, address),
    }
    violations.into_result()?;
    Ok(NewOrderRequest {
        request_id: request.request_id.clone(),
        lines: request
            .lines
            .iter()
            .map(|line| (line.product_id.clone(), line.quantity))
            .collect(),
        payment_token: request.payment_token.clone(),
        address: request.shipping_address.clone().unwrap_or_default(),
    })
}

fn lines(violations: &mut FieldViolations, request: &CreateOrderRequest) {
    violations.check(
        (1..=MAX_LINES).contains(&request.lines.len()),
        "lines",
        "must hold 1 to 20 lines",
    );
    if request.lines.len() > MAX_LINES {
        // Reported once, the lines left unread: a million of them cost no more than 21.
        return;
    }
    let mut seen = HashSet::new();
    for (i, line) in request.lines.iter().enumerate() {
        let field = format!("lines[{i}].product_id");
        violations
            .check(
                is_resource_id(&line.product_id),
                &field,
                "must be 1 to 63 lowercase letters, digits or hyphens",
            )
            .check(
                seen.insert(&line.product_id),
                &field,
                "is repeated; give each product once",
            )
            .check(
                (1..=MAX_QUANTITY).contains(&line.quantity),
                &format!("lines[{i}].quantity"),
                "must be from 1 to 100",
            );
    }
}

fn is_payment_token(token: &str) -> bool {
    (1..=MAX_PAYMENT_TOKEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

fn shipping_address(violations: &mut FieldViolations, address: &ShippingAddress) {
    text(
        violations,
        "shipping_address.recipient",
        &address.recipient,
        200,
    );
    let lines = &address.address_lines;
    violations.check(
        (1..=MAX_ADDRESS_LINES).contains(&lines.len()),
        "shipping_address.address_lines",
        "must hold 1 to 3 lines",
    );
    if lines.len() <= MAX_ADDRESS_LINES {
        for (i, line) in lines.iter().enumerate() {
            text(
                violations,
                &format!("shipping_address.address_lines[{i}]"),
                line,
                200,
            );
        }
    }
    text(
        violations,
        "shipping_address.locality",
        &address.locality,
        100,
    );
    text(
        violations,
        "shipping_address.postal_code",
        &address.postal_code,
        20,
    );
    violations.check(
        address.region_code.len() == 2
            && address.region_code.bytes().all(|b| b.is_ascii_uppercase()),
        "shipping_address.region_code",
        "must be a CLDR region code: two capital letters, such as DE",
    );
}

/// 1 to `max` characters, not only spaces, no control characters (a line break in a
/// recipient or a postal code is a mistake, and would break a shipping label).
fn text(violations: &mut FieldViolations, field: &str, value: &str, max: usize) {
    // A character is 1 to 4 bytes: the bytes bound the count before it is counted, so a
    // string of megabytes is not walked through.
    let ok = !value.is_empty()
        && value.len() <= max.saturating_mul(4)
        && value.chars().count() <= max
        && !value.trim().is_empty()
        && !value.chars().any(char::is_control);
    violations.check(
        ok,
        field,
        &format!("must be 1 to {max} characters, not only spaces, without control characters"),
    );
}

#[cfg(test)]
mod properties;
