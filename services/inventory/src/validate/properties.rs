//! Properties of the request checks on arbitrary requests: any text (any characters, empty,
//! megabytes), any numbers, lists of any length. Each check either accepts, with a result
//! the service can use, or answers INVALID_ARGUMENT with a bounded BadRequest that names a
//! field; none panics.

use meshmart::{
    proto::inventory::{
        AdjustStockRequest, BatchGetStockRequest, ReservationItem, ReserveStockRequest,
        SetStockRequest,
    },
    testing::violated_fields,
    validation::{check_bad_request, is_idempotency_key, is_resource_id},
};
use proptest::{collection::vec, prelude::*};
use tonic::Status;

use super::*;

/// Any text a client could send, weighted towards what the checks look at: any
/// characters; almost-ids and almost-keys; one character many times over, past every
/// limit; blanks.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z0-9-]{0,70}",
        1 => "[a-zA-Z0-9._:-]{0,130}",
        1 => (any::<char>(), 0..9000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => "[ \t\n\u{a0}]{0,3}",
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9][a-z0-9-]{0,62}", 1 => text()]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-zA-Z0-9._:-]{1,128}", 1 => text()]
}

fn int64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -1_000_000_005..1_000_000_005i64,
        -3..3i64,
        Just(i64::MIN),
        Just(i64::MAX)
    ]
}

/// The answer of a check that refused: INVALID_ARGUMENT, a field named, within bounds.
fn refused(status: &Status) -> Result<(), TestCaseError> {
    check_bad_request(status).map_err(TestCaseError::fail)
}

proptest! {
    #[test]
    fn ids_and_keys_are_checked(id in id(), key in key()) {
        match product_id("product_id", &id) {
            Ok(()) => prop_assert!(is_resource_id(&id)),
            Err(status) => refused(&status)?,
        }
        match reservation_id(&key) {
            Ok(()) => prop_assert!(is_idempotency_key(&key)),
            Err(status) => refused(&status)?,
        }
    }

    #[test]
    fn batch_get_takes_1_to_1000_distinct_ids(
        product_ids in prop_oneof![
            4 => vec(id(), 0..12),
            1 => (0..3000usize).prop_map(|n| (0..n).map(|i| format!("p{i}")).collect()),
            1 => (0..3000usize, id()).prop_map(|(n, id)| vec![id; n]),
        ],
    ) {
        let request = BatchGetStockRequest { product_ids };
        match batch_get(&request) {
            Ok(()) => {
                let ids = &request.product_ids;
                prop_assert!((1..=MAX_BATCH).contains(&ids.len()));
                prop_assert!(ids.iter().all(|id| is_resource_id(id)));
                let distinct: HashSet<_> = ids.iter().collect();
                prop_assert_eq!(distinct.len(), ids.len());
            }
            Err(status) => refused(&status)?,
        }
    }

    #[test]
    fn set_stock_takes_0_to_a_billion(product_id in id(), available_quantity in int64()) {
        // Built on the default so that the `request_id` being added to SetStockRequest
        // does not break this test.
        #[allow(clippy::needless_update)]
        let request = SetStockRequest { product_id, available_quantity, ..Default::default() };
        match set_stock(&request) {
            Ok(()) => {
                prop_assert!(is_resource_id(&request.product_id));
                prop_assert!((0..=MAX_QUANTITY).contains(&request.available_quantity));
            }
            Err(status) => refused(&status)?,
        }
    }

    #[test]
    fn adjust_stock_takes_a_non_zero_delta(
        product_id in id(),
        delta in int64(),
        request_id in key(),
    ) {
        let request = AdjustStockRequest { product_id, delta, request_id };
        match adjust_stock(&request) {
            Ok(()) => {
                prop_assert!(request.delta != 0);
                prop_assert!((-MAX_QUANTITY..=MAX_QUANTITY).contains(&request.delta));
            }
            Err(status) => refused(&status)?,
        }
    }

    #[test]
    fn reserve_takes_1_to_100_distinct_items(
        reservation_id in key(),
        items in prop_oneof![
            4 => vec((id(), int64()), 0..8),
            1 => (0..400usize, 1..5i64)
                .prop_map(|(n, quantity)| (0..n).map(|i| (format!("p{i}"), quantity)).collect()),
        ],
    ) {
        let request = ReserveStockRequest {
            reservation_id,
            items: items
                .into_iter()
                .map(|(product_id, quantity)| ReservationItem { product_id, quantity })
                .collect(),
        };
        match reserve(&request) {
            Ok(items) => {
                prop_assert!((1..=MAX_ITEMS).contains(&items.len()));
                prop_assert_eq!(items.len(), request.items.len());
                for (product_id, quantity) in &items {
                    prop_assert!(is_resource_id(product_id));
                    prop_assert!((1..=MAX_QUANTITY).contains(quantity));
                }
                let distinct: HashSet<_> = items.iter().map(|(id, _)| id).collect();
                prop_assert_eq!(distinct.len(), items.len());
            }
            Err(status) => refused(&status)?,
        }
    }
}

/// Found by `adjust_stock_takes_a_non_zero_delta`: `delta.abs()` overflowed.
#[test]
fn the_most_negative_delta_is_refused() {
    for delta in [
        i64::MIN,
        i64::MIN + 1,
        -MAX_QUANTITY - 1,
        MAX_QUANTITY + 1,
        i64::MAX,
    ] {
        let request = AdjustStockRequest {
            product_id: "cup".into(),
            delta,
            request_id: "r1".into(),
        };
        assert_eq!(
            violated_fields(adjust_stock(&request)),
            ["delta"],
            "{delta}"
        );
    }
}

#[test]
fn a_million_ids_are_one_violation() {
    let request = BatchGetStockRequest {
        product_ids: vec!["NOT AN ID".to_owned(); 1_000_000],
    };
    assert_eq!(violated_fields(batch_get(&request)), ["product_ids"]);
}

#[test]
fn a_thousand_bad_ids_are_twenty_and_a_count() {
    let request = BatchGetStockRequest {
        product_ids: vec!["NOT AN ID".to_owned(); MAX_BATCH],
    };
    let status = batch_get(&request).unwrap_err();
    check_bad_request(&status).unwrap();
    let fields = violated_fields::<()>(Err(status));
    assert_eq!(
        fields.len(),
        meshmart::validation::MAX_REPORTED_VIOLATIONS + 1
    );
    assert_eq!(fields[..2], ["product_ids[0]", "product_ids[1]"]);
}

#[test]
fn too_many_items_are_one_violation() {
    let request = ReserveStockRequest {
        reservation_id: "order-1".into(),
        items: vec![
            ReservationItem {
                product_id: "BAD".into(),
                quantity: 0,
            };
            100_000
        ],
    };
    assert_eq!(violated_fields(reserve(&request)), ["items"]);
}
