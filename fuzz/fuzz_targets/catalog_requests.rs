//! The catalog's request checks on any bytes decoded as its requests (the first byte picks
//! the request): each accepts, with a usable result, or refuses with INVALID_ARGUMENT whose
//! bounded BadRequest names a field.

#![no_main]

use catalog::fuzzing::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, create, list, product_name, update};
use libfuzzer_sys::fuzz_target;
use meshmart::{
    proto::catalog::{
        CreateProductRequest, GetProductRequest, ListProductsRequest, UpdateProductRequest,
    },
    validation::{check_bad_request, is_resource_id},
};
use prost::Message;
use tonic::Status;

fuzz_target!(|data: &[u8]| {
    let Some((&which, message)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let Ok(request) = GetProductRequest::decode(message) else {
                return;
            };
            match product_name(&request.name) {
                Ok(id) => assert_eq!(format!("products/{id}"), request.name),
                Err(status) => refused(&status),
            }
        }
        1 => {
            let Ok(request) = ListProductsRequest::decode(message) else {
                return;
            };
            match list(&request) {
                Ok((after, size)) => {
                    assert!(request.page_size >= 0);
                    let expected = match request.page_size {
                        0 => DEFAULT_PAGE_SIZE,
                        n => usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE),
                    };
                    assert_eq!(size, expected);
                    assert!(after.as_deref().is_none_or(is_resource_id));
                }
                Err(status) => refused(&status),
            }
        }
        2 => {
            let Ok(request) = CreateProductRequest::decode(message) else {
                return;
            };
            match create(&request) {
                Ok((id, fields)) => {
                    assert!(is_resource_id(&id));
                    assert!(
                        fields
                            .display_name
                            .is_some_and(|name| !name.trim().is_empty())
                    );
                    assert!(fields.price.is_some());
                }
                Err(status) => refused(&status),
            }
        }
        _ => {
            let Ok(request) = UpdateProductRequest::decode(message) else {
                return;
            };
            match update(&request) {
                Ok((id, changes)) => {
                    assert!(is_resource_id(&id));
                    assert!(
                        changes.display_name.is_some()
                            || changes.description.is_some()
                            || changes.price.is_some()
                    );
                }
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
