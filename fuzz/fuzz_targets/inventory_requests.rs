//! Inventory's request checks on any bytes decoded as its requests (the first byte picks
//! the request): each accepts, with a usable result, or refuses with INVALID_ARGUMENT whose
//! bounded BadRequest names a field.

#![no_main]

use std::collections::HashSet;

use inventory::fuzzing::{
    MAX_BATCH, MAX_ITEMS, MAX_QUANTITY, adjust_stock, batch_get, product_id, reservation_id,
    reserve, set_stock,
};
use libfuzzer_sys::fuzz_target;
use meshmart::{
    proto::inventory::{
        AdjustStockRequest, BatchGetStockRequest, GetReservationRequest, GetStockRequest,
        ReserveStockRequest, SetStockRequest,
    },
    validation::{check_bad_request, is_idempotency_key, is_resource_id},
};
use prost::Message;
use tonic::Status;

fuzz_target!(|data: &[u8]| {
    let Some((&which, message)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            let Ok(request) = GetStockRequest::decode(message) else {
                return;
            };
            match product_id(&request.product_id) {
                Ok(()) => assert!(is_resource_id(&request.product_id)),
                Err(status) => refused(&status),
            }
        }
        1 => {
            let Ok(request) = BatchGetStockRequest::decode(message) else {
                return;
            };
            match batch_get(&request) {
                Ok(()) => {
                    let ids = &request.product_ids;
                    assert!((1..=MAX_BATCH).contains(&ids.len()));
                    assert!(ids.iter().all(|id| is_resource_id(id)));
                    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
                }
                Err(status) => refused(&status),
            }
        }
        2 => {
            let Ok(request) = SetStockRequest::decode(message) else {
                return;
            };
            match set_stock(&request) {
                Ok(()) => {
                    assert!(is_resource_id(&request.product_id));
                    assert!((0..=MAX_QUANTITY).contains(&request.available_quantity));
                }
                Err(status) => refused(&status),
            }
        }
        3 => {
            let Ok(request) = AdjustStockRequest::decode(message) else {
                return;
            };
            match adjust_stock(&request) {
                Ok(()) => {
                    assert!(request.delta != 0);
                    assert!((-MAX_QUANTITY..=MAX_QUANTITY).contains(&request.delta));
                    assert!(is_idempotency_key(&request.request_id));
                }
                Err(status) => refused(&status),
            }
        }
        4 => {
            let Ok(request) = ReserveStockRequest::decode(message) else {
                return;
            };
            match reserve(&request) {
                Ok(items) => {
                    assert!((1..=MAX_ITEMS).contains(&items.len()));
                    assert!(items.iter().all(|(id, quantity)| {
                        is_resource_id(id) && (1..=MAX_QUANTITY).contains(quantity)
                    }));
                    let distinct = items.iter().map(|(id, _)| id).collect::<HashSet<_>>();
                    assert_eq!(distinct.len(), items.len());
                }
                Err(status) => refused(&status),
            }
        }
        _ => {
            // GetReservation, ReleaseReservation and CommitReservation have one field, the
            // same check.
            let Ok(request) = GetReservationRequest::decode(message) else {
                return;
            };
            match reservation_id(&request.reservation_id) {
                Ok(()) => assert!(is_idempotency_key(&request.reservation_id)),
                Err(status) => refused(&status),
            }
        }
    }
});

fn refused(status: &Status) {
    if let Err(problem) = check_bad_request(status) {
        panic!("{problem}");
    }
}
