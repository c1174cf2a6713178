//! Properties of the request checks on arbitrary requests: any text (any characters, empty,
//! megabytes), any numbers, lists around and far past their limits. Each check either
//! accepts, with a result the service can use, or answers INVALID_ARGUMENT with a bounded
//! BadRequest that names a field, and never quotes the request back; none panics.

use meshmart::{
    page_token::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    proto::{
        google::r#type::Money,
        orders::{CreateOrderRequest, ListOrdersRequest, OrderLine, ShippingAddress},
    },
    validation::{check_bad_request, field_violations, is_resource_id},
};
use proptest::{collection::vec, option, prelude::*};
use tonic::Status;

use super::*;

/// Any text a client could send, weighted towards what the checks look at.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z0-9-]{0,70}",
        1 => (any::<char>(), 0..1000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => "[ \t\n\u{a0}\u{3000}]{0,5}",
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9][a-z0-9-]{0,62}", 1 => text()]
}

fn line() -> impl Strategy<Value = OrderLine> {
    (
        id(),
        prop_oneof![any::<i64>(), -2..105i64],
        option::of(Just(Money::default())),
    )
        .prop_map(|(product_id, quantity, unit_price)| OrderLine {
            product_id,
            quantity,
            unit_price,
        })
}

fn address() -> impl Strategy<Value = ShippingAddress> {
    let short = prop_oneof![3 => "[A-Za-z0-9 ]{1,30}", 1 => text()];
    (
        short.clone(),
        vec(short.clone(), 0..5),
        short.clone(),
        short,
        prop_oneof![3 => "[A-Z]{2}", 1 => text()],
    )
        .prop_map(
            |(recipient, address_lines, locality, postal_code, region_code)| ShippingAddress {
                recipient,
                address_lines,
                locality,
                postal_code,
                region_code,
            },
        )
}

fn lines() -> impl Strategy<Value = Vec<OrderLine>> {
    prop_oneof![
        6 => vec(line(), 0..23),
        1 => (0..5000usize).prop_map(|n| vec![OrderLine::default(); n]),
    ]
}

/// The answer of a check that refused: INVALID_ARGUMENT, a field named, within bounds, and
/// no description quoting what was sent.
fn refused(status: &Status, secrets: &[&str]) -> Result<(), TestCaseError> {
    check_bad_request(status).map_err(TestCaseError::fail)?;
    for (_, description) in field_violations(status) {
        // Long enough that a fixed description cannot contain it by chance.
        for secret in secrets.iter().filter(|s| s.len() > 12) {
            prop_assert!(
                !description.contains(secret),
                "{description} quotes {secret}"
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn create_accepts_only_a_whole_order(
        request_id in prop_oneof![Just(String::new()), "[a-zA-Z0-9._:-]{1,110}", text()],
        lines in lines(),
        payment_token in prop_oneof![Just("tok_visa_approved".to_owned()), "[!-~]{0,210}", text()],
        shipping_address in option::weighted(0.9, address()),
    ) {
        let request = CreateOrderRequest { request_id, lines, payment_token, shipping_address };
        match create(&request) {
            Ok(order) => {
                prop_assert!((1..=MAX_REQUEST_ID).contains(&order.request_id.len()));
                prop_assert!((1..=MAX_LINES).contains(&order.lines.len()));
                for (product_id, quantity) in &order.lines {
                    prop_assert!(is_resource_id(product_id));
                    prop_assert!((1..=MAX_QUANTITY).contains(quantity));
                }
                prop_assert!((1..=MAX_PAYMENT_TOKEN).contains(&order.payment_token.len()));
                prop_assert!((1..=3).contains(&order.address.address_lines.len()));
                prop_assert_eq!(order.address.region_code.len(), 2);
            }
            Err(status) => {
                let address = request.shipping_address.clone().unwrap_or_default();
                refused(&status, &[&request.payment_token, &address.recipient, &address.postal_code])?;
            }
        }
    }

    #[test]
    fn list_clamps_the_page_size(
        page_size in prop_oneof![any::<i32>(), -3..150i32],
        page_token in prop_oneof![
            Just(String::new()),
            ("[0-9]{1,13}", "[a-f0-9]{32}").prop_map(|(t, id)| PAGE_TOKENS.encode(&format!("{t}.{id}"))),
            text(),
        ],
    ) {
        let request = ListOrdersRequest { page_size, page_token };
        match list(&request) {
            Ok((after, size)) => {
                prop_assert!(page_size >= 0);
                let expected = match page_size {
                    0 => DEFAULT_PAGE_SIZE,
                    n => usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE),
                };
                prop_assert_eq!(size, expected);
                prop_assert!(after.is_none_or(|cursor| is_resource_id(&cursor.order_id)));
            }
            Err(status) => refused(&status, &[])?,
        }
    }

    #[test]
    fn a_cursor_round_trips(create_time_ms in 0..i64::MAX, id in "[a-f0-9]{32}") {
        let cursor = Cursor { create_time_ms, order_id: id };
        let request = ListOrdersRequest { page_size: 0, page_token: page_token(&cursor) };
        prop_assert_eq!(list(&request).map(|(after, _)| after).ok(), Some(Some(cursor)));
    }
}

#[test]
fn a_million_lines_are_one_violation() {
    let request = CreateOrderRequest {
        lines: vec![OrderLine::default(); 1_000_000],
        ..CreateOrderRequest::default()
    };
    let status = create(&request).unwrap_err();
    check_bad_request(&status).unwrap();
    let fields = meshmart::testing::violated_fields::<()>(Err(status));
    assert_eq!(
        fields,
        ["request_id", "lines", "payment_token", "shipping_address"]
    );
}

#[test]
fn a_huge_recipient_is_refused_without_counting() {
    let request = CreateOrderRequest {
        request_id: "r-1".into(),
        lines: vec![OrderLine {
            product_id: "cup".into(),
            quantity: 1,
            unit_price: None,
        }],
        payment_token: "tok_visa_approved".into(),
        shipping_address: Some(ShippingAddress {
            recipient: "é".repeat(4 << 20),
            address_lines: vec!["1 Main St".into()],
            locality: "Berlin".into(),
            postal_code: "10115\n".into(),
            region_code: "DE".into(),
        }),
    };
    let status = create(&request).unwrap_err();
    assert_eq!(
        meshmart::testing::violated_fields::<()>(Err(status)),
        ["shipping_address.recipient", "shipping_address.postal_code"]
    );
}
