//! The catalog over real gRPC, in front of the real inventory service.

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
        inventory::{ReservationItem, ReserveStockRequest, SetStockRequest},
    },
    testing::backends,
};
use prost_types::FieldMask;
use tonic::Code;

fn get(name: &str) -> GetProductRequest {
    GetProductRequest {
        name: name.to_owned(),
    }
}

fn new_product(display_name: &str, units: i64) -> Product {
    Product {
        display_name: display_name.to_owned(),
        description: "test product".to_owned(),
        price: Some(Money {
            currency_code: "EUR".to_owned(),
            units,
            nanos: 0,
        }),
        ..Product::default()
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn products_carry_live_stock_from_inventory() {
    for backend in backends() {
        let mut shop = support::start_on(backend, "live_stock").await;
        let reply = shop
            .client
            .get_product(get("products/espresso-cup"))
            .await
            .unwrap();
        assert_eq!(reply.metadata().get("x-meshmart-version").unwrap(), "v1");
        assert_eq!(
            reply.metadata().get("x-meshmart-service").unwrap(),
            "catalog"
        );
        let product = reply.into_inner().product.unwrap();
        assert_eq!(product.display_name, "Espresso cup");
        assert_eq!(product.available_quantity, 60, "{backend:?}");

        // Stock reserved in inventory shows in the catalog at once.
        let inventory = shop.inventory_client.as_mut().unwrap();
        inventory
            .reserve_stock(ReserveStockRequest {
                reservation_id: "basket-1".into(),
                items: vec![ReservationItem {
                    product_id: "espresso-cup".into(),
                    quantity: 5,
                }],
            })
            .await
            .unwrap();
        inventory
            .set_stock(SetStockRequest {
                product_id: "travel-mug".into(),
                available_quantity: 3,
                request_id: "restock-travel-mug".into(),
            })
            .await
            .unwrap();
        let page = shop
            .client
            .list_products(ListProductsRequest {
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let stock = |name: &str| {
            page.products
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.available_quantity)
                .unwrap()
        };
        assert_eq!(stock("products/espresso-cup"), 55);
        assert_eq!(stock("products/travel-mug"), 3);
        assert_eq!(stock("products/milk-frother"), 0);
        shop.stop().await;
    }
}

async fn list_all(shop: &mut support::Shop, page_size: i32) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut tokens = vec![String::new()];
    // Bounded: the demo catalogue has 8 products plus what a test adds.
    for _ in 0..50 {
        let page = shop
            .client
            .list_products(ListProductsRequest {
                page_size,
                page_token: tokens.last().unwrap().clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.products.len() <= usize::try_from(page_size).unwrap());
        names.extend(page.products.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            return (names, tokens);
        }
        tokens.push(page.next_page_token);
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn pagination_to_the_end_and_back() {
    let mut shop = support::start("pagination").await;
    for i in 0..5 {
        shop.client
            .create_product(CreateProductRequest {
                product_id: format!("extra-{i}"),
                product: Some(new_product(&format!("Extra {i}"), 5)),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let (everything, _) = list_all(&mut shop, 100).await;
    assert_eq!(everything.len(), 13);

    // Forward to the end, three at a time: every product once, in the same order.
    let (paged, tokens) = list_all(&mut shop, 3).await;
    assert_eq!(paged, everything);
    assert_eq!(tokens.len(), 5, "13 products make 5 pages of 3");

    // And back: each earlier token still returns its page, as it did the first time.
    for (index, token) in tokens.iter().enumerate().rev() {
        let page = shop
            .client
            .list_products(ListProductsRequest {
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let names: Vec<_> = page.products.into_iter().map(|p| p.name).collect();
        let end = (index * 3 + 3).min(everything.len());
        assert_eq!(names, everything[index * 3..end], "page {index}");
    }

    // Page size 0 is the default (20); more than 100 is read as 100.
    for page_size in [0, 1000] {
        let page = shop
            .client
            .list_products(ListProductsRequest {
                page_size,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.products.len(), 13);
        assert!(page.next_page_token.is_empty());
    }
    shop.stop().await;
}

#[tokio::test]
async fn not_found() {
    let mut shop = support::start("not_found").await;
    let status = shop
        .client
        .get_product(get("products/no-such-thing"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.metadata().get("x-meshmart-version").unwrap(), "v1");
    let status = shop
        .client
        .update_product(UpdateProductRequest {
            product: Some(Product {
                name: "products/no-such-thing".into(),
                display_name: "x".into(),
                ..Product::default()
            }),
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    shop.stop().await;
}

#[tokio::test]
async fn update_masks_change_only_what_they_name() {
    let mut shop = support::start("update_masks").await;
    let before = shop
        .client
        .get_product(get("products/french-press"))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    let update = |paths: &[&str], product: Product| UpdateProductRequest {
        product: Some(Product {
            name: "products/french-press".into(),
            ..product
        }),
        update_mask: mask(paths),
    };

    // Only display_name, although description is set in the request too.
    let after = shop
        .client
        .update_product(update(
            &["display_name"],
            Product {
                display_name: "Cafetière".into(),
                description: "ignored".into(),
                ..Product::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(after.display_name, "Cafetière");
    assert_eq!(after.description, before.description);
    assert_eq!(after.price, before.price);
    assert_eq!(after.available_quantity, 20, "stock joined on update too");

    // Only price.
    let after = shop
        .client
        .update_product(update(&["price"], new_product("ignored", 45)))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(after.display_name, "Cafetière");
    assert_eq!(after.price.as_ref().unwrap().units, 45);

    // No mask: every field the request sets.
    let after = shop
        .client
        .update_product(UpdateProductRequest {
            product: Some(Product {
                name: "products/french-press".into(),
                description: "New words".into(),
                ..Product::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(after.description, "New words");
    assert_eq!(after.display_name, "Cafetière");

    // `*`: every mutable field, so all must be valid.
    let after = shop
        .client
        .update_product(update(&["*"], new_product("French press", 39)))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(after.display_name, "French press");
    assert_eq!(after.description, "test product");
    assert!(after.update_time.unwrap().seconds >= before.update_time.unwrap().seconds);
    assert_eq!(after.create_time, before.create_time);
    shop.stop().await;
}

#[tokio::test]
async fn create_is_idempotent_on_request_id() {
    let mut shop = support::start("create").await;
    let create = |product_id: &str, request_id: &str| CreateProductRequest {
        product_id: product_id.to_owned(),
        product: Some(new_product("Moka pot", 35)),
        request_id: request_id.to_owned(),
    };
    let first = shop
        .client
        .create_product(create("moka-pot", "req-1"))
        .await
        .unwrap()
        .into_inner();
    // A retry of the same call returns the same product, unchanged.
    let again = shop
        .client
        .create_product(create("moka-pot", "req-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(first.product.as_ref().unwrap().name, "products/moka-pot");
    // Another call for the same id is a conflict...
    let status = shop
        .client
        .create_product(create("moka-pot", "req-2"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let status = shop
        .client
        .create_product(create("moka-pot", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    // ...and so is a request_id reused for another product.
    let status = shop
        .client
        .create_product(create("other-pot", "req-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    shop.stop().await;
}

#[tokio::test]
async fn reflection_lists_only_the_catalog() {
    let shop = support::start("reflection").await;
    let channel = tonic::transport::Channel::from_shared(shop.catalog.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        meshmart::testing::reflected_services(channel).await,
        meshmart::testing::served_services(&["meshmart.catalog.v1.CatalogService"])
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_request_id_is_one_create_under_concurrency_on_every_backend() {
    for backend in meshmart::testing::backends() {
        let shop = support::start_on(backend, "concurrent_create").await;
        let create = |display_name: String| CreateProductRequest {
            product_id: "cold-brew-jar".to_owned(),
            product: Some(new_product(&display_name, 30)),
            request_id: "req-press".to_owned(),
        };

        // 50 identical calls at once: one product, the same reply to every caller.
        let identical: Vec<_> = (0..50)
            .map(|_| {
                let mut client = shop.client.clone();
                let request = create("French press".into());
                tokio::spawn(async move { client.create_product(request).await })
            })
            .collect();
        let mut replies = Vec::new();
        for call in identical {
            replies.push(call.await.unwrap().unwrap().into_inner().product);
        }
        assert!(
            replies.windows(2).all(|pair| pair[0] == pair[1]),
            "{backend:?}"
        );

        // The same request_id with other payloads, 20 at once: every one is refused.
        let different: Vec<_> = (0..20)
            .map(|i| {
                let mut client = shop.client.clone();
                let request = create(format!("French press {i}"));
                tokio::spawn(async move { client.create_product(request).await })
            })
            .collect();
        for call in different {
            let status = call.await.unwrap().unwrap_err();
            assert_eq!(
                status.code(),
                Code::AlreadyExists,
                "{backend:?}: {status:?}"
            );
        }
        shop.stop().await;
    }
}
