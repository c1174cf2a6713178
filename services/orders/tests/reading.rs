//! Reading orders: each customer sees only their own (another's is NOT_FOUND, as if it did
//! not exist), every call needs the customer header, and ListOrders pages newest first
//! with tokens that can be used again.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::orders::{
        CreateOrderRequest, GetOrderRequest, ListOrdersRequest, Order, WatchOrderRequest,
    },
    testing::backends,
};
use support::{Broker, as_customer, order_request, unique};
use tonic::{Code, Request};

#[tokio::test]
async fn a_customer_sees_only_their_own_orders_and_every_call_names_one() {
    for backend in backends() {
        let shop = support::start(
            backend,
            &Broker::Embedded,
            &format!("scoping_{backend:?}").to_lowercase(),
        )
        .await;
        let mut client = shop.client.clone();
        let (alice, mallory) = (unique("alice-"), unique("mallory-"));
        let order = client
            .create_order(as_customer(
                &alice,
                order_request("mine", &[("coffee-scale", 1)], "tok_visa_approved"),
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        let get = GetOrderRequest {
            name: order.name.clone(),
        };
        let watch = WatchOrderRequest {
            name: order.name.clone(),
        };

        let status = client
            .get_order(as_customer(&mallory, get.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{backend:?}");
        let status = client
            .watch_order(as_customer(&mallory, watch.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let listed = client
            .list_orders(as_customer(&mallory, ListOrdersRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.orders.is_empty());
        // The same request_id is Mallory's own order, not a way to Alice's.
        let theirs = client
            .create_order(as_customer(
                &mallory,
                order_request("mine", &[("coffee-scale", 1)], "tok_visa_approved"),
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_ne!(theirs.name, order.name);
        assert_eq!(theirs.customer_id, mallory);

        let unauthenticated = [
            client
                .create_order(Request::new(CreateOrderRequest::default()))
                .await
                .map(drop),
            client.get_order(Request::new(get.clone())).await.map(drop),
            client
                .list_orders(Request::new(ListOrdersRequest::default()))
                .await
                .map(drop),
            client
                .watch_order(Request::new(watch.clone()))
                .await
                .map(drop),
        ];
        for result in unauthenticated {
            assert_eq!(result.unwrap_err().code(), Code::Unauthenticated);
        }
        shop.stop().await;
    }
}

#[tokio::test]
async fn list_orders_pages_newest_first() {
    for backend in backends() {
        let shop = support::start(
            backend,
            &Broker::Embedded,
            &format!("paging_{backend:?}").to_lowercase(),
        )
        .await;
        let mut client = shop.client.clone();
        let customer = unique("paula-");
        let mut placed: Vec<Order> = Vec::new();
        for i in 0..5 {
            let order = client
                .create_order(as_customer(
                    &customer,
                    order_request(
                        &format!("r-{i}"),
                        &[("espresso-cup", 1)],
                        "tok_visa_approved",
                    ),
                ))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap();
            placed.push(order);
        }
        // Someone else's order is on no page of hers.
        client
            .create_order(as_customer(
                &unique("other-"),
                order_request("r-0", &[("espresso-cup", 1)], "tok_visa_approved"),
            ))
            .await
            .unwrap();
        let newest_first = |order: &Order| {
            let time = order.create_time.unwrap();
            std::cmp::Reverse((time.seconds, time.nanos, order.name.clone()))
        };
        placed.sort_by_key(newest_first);

        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_orders(as_customer(
                    &customer,
                    ListOrdersRequest {
                        page_size: 2,
                        page_token: token.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            pages.push(page.orders.len());
            if !token.is_empty() {
                // A token fetches the same page again.
                let again = client
                    .list_orders(as_customer(
                        &customer,
                        ListOrdersRequest {
                            page_size: 2,
                            page_token: token.clone(),
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(again.orders, page.orders);
            }
            let names: Vec<String> = page.orders.iter().map(|o| o.name.clone()).collect();
            let done = page.next_page_token.is_empty();
            token = page.next_page_token;
            let offset = pages.iter().sum::<usize>() - names.len();
            let expected: Vec<String> = placed[offset..offset + names.len()]
                .iter()
                .map(|o| o.name.clone())
                .collect();
            assert_eq!(names, expected, "{backend:?}");
            if done {
                break;
            }
        }
        assert_eq!(pages, [2, 2, 1], "{backend:?}");
        shop.stop().await;
    }
}
