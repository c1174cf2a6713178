//! What the catalog sends to inventory: one batched call per request, carrying the
//! caller's deadline and trace headers, and nothing that belongs to the caller's hop.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::{
    context::parse_grpc_timeout,
    proto::{
        catalog::{CreateProductRequest, GetProductRequest, ListProductsRequest, Product},
        google::r#type::Money,
    },
    testing::{self, Backend},
};
use support::fake_inventory::FakeInventory;
use tonic::{Code, Request};

async fn shop_with_fake(
    fake: FakeInventory,
    test: &str,
) -> (support::Shop, testing::TestServer<tonic::transport::Error>) {
    let inventory = fake.spawn().await;
    let shop = support::start_catalog(
        Backend::Sqlite,
        tempfile::tempdir().unwrap(),
        test,
        &inventory.endpoint(),
        testing::server_config(catalog::SERVICE),
    )
    .await;
    (shop, inventory)
}

#[tokio::test]
async fn one_batched_stock_call_per_request() {
    let fake = FakeInventory::default();
    let (mut shop, inventory) = shop_with_fake(fake.clone(), "one_batch").await;

    let page = shop
        .client
        .list_products(ListProductsRequest {
            page_size: 5,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.products.len(), 5);
    assert!(page.products.iter().all(|p| p.available_quantity == 7));
    shop.client
        .get_product(GetProductRequest {
            name: "products/travel-mug".into(),
        })
        .await
        .unwrap();

    let recorded = fake.recorded.lock().await;
    let expected_page: Vec<String> = page
        .products
        .iter()
        .map(|p| p.name.trim_start_matches("products/").to_owned())
        .collect();
    assert_eq!(
        recorded.batches,
        vec![expected_page, vec!["travel-mug".to_owned()]]
    );
    drop(recorded);
    shop.stop().await;
    inventory.stop().await.unwrap();
}

#[tokio::test]
async fn deadline_and_trace_headers_go_downstream() {
    let fake = FakeInventory::default();
    let (mut shop, inventory) = shop_with_fake(fake.clone(), "deadline").await;

    let mut request = Request::new(GetProductRequest {
        name: "products/travel-mug".into(),
    });
    request.set_timeout(Duration::from_secs(30));
    request
        .metadata_mut()
        .insert("x-request-id", "req-7".parse().unwrap());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("authorization", "Bearer caller-token".parse().unwrap());
    shop.client.get_product(request).await.unwrap();
    // Without a deadline, none is invented.
    shop.client
        .get_product(GetProductRequest {
            name: "products/travel-mug".into(),
        })
        .await
        .unwrap();

    let recorded = fake.recorded.lock().await;
    let with_deadline = &recorded.metadata[0];
    let timeout =
        parse_grpc_timeout(with_deadline.get("grpc-timeout").unwrap().to_str().unwrap()).unwrap();
    assert!(
        timeout > Duration::ZERO && timeout <= Duration::from_secs(30),
        "{timeout:?}"
    );
    assert_eq!(with_deadline.get("x-request-id").unwrap(), "req-7");
    // No spans of its own are exported here, so the trace context goes on as it came.
    assert_eq!(with_deadline.get("traceparent").unwrap(), traceparent);
    assert!(with_deadline.get("authorization").is_none());
    assert!(recorded.metadata[1].get("grpc-timeout").is_none());
    drop(recorded);
    shop.stop().await;
    inventory.stop().await.unwrap();
}

#[tokio::test]
async fn inventory_out_of_reach_is_unavailable() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut shop = support::start_catalog(
        Backend::Sqlite,
        tempfile::tempdir().unwrap(),
        "unavailable",
        &format!("http://{closed}"),
        testing::server_config(catalog::SERVICE),
    )
    .await;
    let status = shop
        .client
        .get_product(GetProductRequest {
            name: "products/travel-mug".into(),
        })
        .await
        .unwrap_err();
    // UNAVAILABLE, so the caller knows a retry later may succeed; marked so that the
    // caller's route does not retry what inventory's route already did.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .metadata()
            .get(meshmart::client::NO_RETRY_HEADER)
            .is_some(),
        "{status:?}"
    );

    // A create whose row committed never answers an error because the stock lookup after
    // it failed: the product comes back with its stock unknown, and a retry with the same
    // request_id returns the same product.
    let create = CreateProductRequest {
        product_id: "moka-pot".into(),
        request_id: "req-moka-1".into(),
        product: Some(Product {
            display_name: "Moka pot".into(),
            description: "Stovetop".into(),
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 35,
                nanos: 0,
            }),
            ..Product::default()
        }),
    };
    let first = shop
        .client
        .create_product(create.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(first.stock_unknown);
    let again = shop
        .client
        .create_product(create)
        .await
        .unwrap()
        .into_inner();
    assert!(again.stock_unknown);
    assert_eq!(first.product, again.product);
    assert_eq!(first.product.unwrap().name, "products/moka-pot");
    // A request the catalog can answer alone still fails fast and clearly.
    let status = shop
        .client
        .get_product(GetProductRequest { name: "bad".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    shop.stop().await;
}
