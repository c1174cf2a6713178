//! Every invalid request gets INVALID_ARGUMENT with a BadRequest naming each bad field.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::{
        catalog::{
            CreateProductRequest, GetProductRequest, ListProductsRequest, Product,
            UpdateProductRequest,
        },
        google::r#type::Money,
    },
    testing::violated_fields,
};
use prost_types::FieldMask;

fn money(currency_code: &str, units: i64, nanos: i32) -> Option<Money> {
    Some(Money {
        currency_code: currency_code.to_owned(),
        units,
        nanos,
    })
}

#[tokio::test]
async fn each_bad_field_is_named() {
    let shop = support::start("validation").await;
    let mut client = shop.client.clone();

    for name in [
        "",
        "espresso-cup",
        "products/",
        "products/Espresso",
        "items/espresso-cup",
    ] {
        assert_eq!(
            violated_fields(
                client
                    .get_product(GetProductRequest { name: name.into() })
                    .await
            ),
            ["name"],
            "{name}"
        );
    }

    assert_eq!(
        violated_fields(
            client
                .list_products(ListProductsRequest {
                    page_size: -1,
                    page_token: "forged".into()
                })
                .await
        ),
        ["page_size", "page_token"]
    );

    assert_eq!(
        violated_fields(
            client
                .create_product(CreateProductRequest {
                    product_id: "Bad Id".into(),
                    product: None,
                    request_id: "has space".into(),
                })
                .await
        ),
        ["product_id", "request_id", "product"]
    );
    assert_eq!(
        violated_fields(
            client
                .create_product(CreateProductRequest {
                    product_id: "ok".into(),
                    product: Some(Product {
                        display_name: "   ".into(),
                        description: "d".repeat(2001),
                        price: money("euro", 0, -5),
                        ..Product::default()
                    }),
                    request_id: String::new(),
                })
                .await
        ),
        [
            "product.display_name",
            "product.description",
            "product.price.currency_code",
            "product.price.nanos",
            "product.price.units"
        ]
    );
    assert_eq!(
        violated_fields(
            client
                .create_product(CreateProductRequest {
                    product_id: "ok".into(),
                    product: Some(Product {
                        display_name: "Fine".into(),
                        price: None,
                        ..Product::default()
                    }),
                    request_id: String::new(),
                })
                .await
        ),
        ["product.price"]
    );

    let update = |name: &str, paths: &[&str]| UpdateProductRequest {
        product: Some(Product {
            name: name.into(),
            ..Product::default()
        }),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    assert_eq!(
        violated_fields(
            client
                .update_product(update(
                    "products/espresso-cup",
                    &["colour", "available_quantity"]
                ))
                .await
        ),
        ["update_mask", "update_mask"]
    );
    assert_eq!(
        violated_fields(
            client
                .update_product(update("espresso-cup", &["display_name"]))
                .await
        ),
        ["product.name", "product.display_name"]
    );
    // No mask and nothing set: nothing to change.
    assert_eq!(
        violated_fields(
            client
                .update_product(update("products/espresso-cup", &[]))
                .await
        ),
        ["update_mask"]
    );
    assert_eq!(
        violated_fields(
            client
                .update_product(UpdateProductRequest {
                    product: None,
                    update_mask: None
                })
                .await
        ),
        ["product"]
    );
    shop.stop().await;
}
