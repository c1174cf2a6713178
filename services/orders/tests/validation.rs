//! Every invalid request gets INVALID_ARGUMENT with a BadRequest naming each bad field, and
//! no description repeats what was sent (a payment token, an address).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::orders::{
        CreateOrderRequest, GetOrderRequest, ListOrdersRequest, OrderLine, ShippingAddress,
        WatchOrderRequest,
    },
    testing::{Backend, violated_fields},
};
use support::{Broker, as_customer, order_request};

#[tokio::test]
async fn each_bad_field_is_named() {
    let shop = support::start(Backend::Sqlite, &Broker::Embedded, "validation").await;
    let mut client = shop.client.clone();
    let me = "vera";

    for name in ["", "orders/", "orders/Bad", "products/abc", "abc"] {
        let get = GetOrderRequest { name: name.into() };
        assert_eq!(
            violated_fields(client.get_order(as_customer(me, get)).await),
            ["name"],
            "{name}"
        );
        let watch = WatchOrderRequest { name: name.into() };
        assert_eq!(
            violated_fields(client.watch_order(as_customer(me, watch)).await.map(drop)),
            ["name"],
            "{name}"
        );
    }

    assert_eq!(
        violated_fields(
            client
                .list_orders(as_customer(
                    me,
                    ListOrdersRequest {
                        page_size: -1,
                        page_token: "forged".into(),
                    }
                ))
                .await
        ),
        ["page_size", "page_token"]
    );

    assert_eq!(
        violated_fields(
            client
                .create_order(as_customer(me, CreateOrderRequest::default()))
                .await
        ),
        ["request_id", "lines", "payment_token", "shipping_address"]
    );

    let line = |product_id: &str, quantity| OrderLine {
        product_id: product_id.into(),
        quantity,
        unit_price: None,
    };
    let mut bad = order_request("has space", &[], "tok with space");
    bad.lines = vec![
        line("espresso-cup", 1),
        line("Espresso", 0),
        line("espresso-cup", 101),
    ];
    bad.shipping_address = Some(ShippingAddress {
        recipient: "   ".into(),
        address_lines: vec!["ok".into(), String::new()],
        locality: "l".repeat(101),
        postal_code: "123456789012345678901".into(),
        region_code: "de".into(),
    });
    let status = client.create_order(as_customer(me, bad)).await.unwrap_err();
    let violations = meshmart::validation::field_violations(&status);
    let fields: Vec<&str> = violations.iter().map(|(field, _)| field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "request_id",
            "lines[1].product_id",
            "lines[1].quantity",
            "lines[2].product_id",
            "lines[2].quantity",
            "payment_token",
            "shipping_address.recipient",
            "shipping_address.address_lines[1]",
            "shipping_address.locality",
            "shipping_address.postal_code",
            "shipping_address.region_code",
        ]
    );
    for (_, description) in &violations {
        assert!(!description.contains("tok with space"), "{description}");
    }

    let mut too_many = order_request("r", &[], "tok_visa_approved");
    too_many.lines = (0..21).map(|i| line(&format!("p{i}"), 1)).collect();
    too_many.shipping_address.as_mut().unwrap().address_lines = vec!["a".into(); 4];
    assert_eq!(
        violated_fields(client.create_order(as_customer(me, too_many)).await),
        ["lines", "shipping_address.address_lines"]
    );
    shop.stop().await;
}
