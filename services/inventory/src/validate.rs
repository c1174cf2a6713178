//! Request checks. Each returns every problem at once as INVALID_ARGUMENT.

use std::collections::HashSet;

use meshmart::{
    proto::inventory::{
        AdjustStockRequest, BatchGetStockRequest, ReservationItem, ReserveStockRequest,
        SetStockRequest,
    },
    validation::{FieldViolations, is_idempotency_key, is_resource_id},
};
use tonic::Status;

/// Most units one call may set, add or hold; keeps arithmetic far from overflow.
pub(crate) const MAX_QUANTITY: i64 = 1_000_000_000;
pub(crate) const MAX_BATCH: usize = 1000;
pub(crate) const MAX_ITEMS: usize = 100;

const PRODUCT_ID: &str = "must be 1 to 63 lowercase letters, digits or hyphens";
const KEY: &str = "must be 1 to 128 letters, digits or ._:-";

pub(crate) fn product_id(field: &str, id: &str) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    violations.check(is_resource_id(id), field, PRODUCT_ID);
    violations.into_result()
}

pub(crate) fn reservation_id(id: &str) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    violations.check(is_idempotency_key(id), "reservation_id", KEY);
    violations.into_result()
}

pub(crate) fn batch_get(request: &BatchGetStockRequest) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    let ids = &request.product_ids;
    violations.check(
        (1..=MAX_BATCH).contains(&ids.len()),
        "product_ids",
        "must name 1 to 1000 products",
    );
    if ids.len() > MAX_BATCH {
        // Reported once, the ids left unread: a million of them cost no more than one.
        return violations.into_result();
    }
    // Every GetProduct and ListProducts passes here: the field names are written only for a
    // violation, and one id, which cannot repeat, needs no set.
    let mut seen = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !is_resource_id(id) {
            violations.add(format!("product_ids[{i}]"), PRODUCT_ID);
        }
        if ids.len() > 1 && !seen.insert(id) {
            violations.add(format!("product_ids[{i}]"), "is repeated");
        }
    }
    violations.into_result()
}

pub(crate) fn set_stock(request: &SetStockRequest) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    violations
        .check(
            is_resource_id(&request.product_id),
            "product_id",
            PRODUCT_ID,
        )
        .check(
            (0..=MAX_QUANTITY).contains(&request.available_quantity),
            "available_quantity",
            "must be from 0 to 1000000000",
        )
        .check(is_idempotency_key(&request.request_id), "request_id", KEY);
    violations.into_result()
}

pub(crate) fn adjust_stock(request: &AdjustStockRequest) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    violations
        .check(
            is_resource_id(&request.product_id),
            "product_id",
            PRODUCT_ID,
        )
        .check(
            // Not `delta.abs()`: that overflows for i64::MIN, a panic in debug builds and,
            // in release, i64::MIN itself, which passed as a small enough delta.
            request.delta != 0 && request.delta.unsigned_abs() <= MAX_QUANTITY.unsigned_abs(),
            "delta",
            "must be non-zero, from -1000000000 to 1000000000",
        )
        .check(is_idempotency_key(&request.request_id), "request_id", KEY);
    violations.into_result()
}

/// Checks a reservation and returns its items as `(product_id, quantity)`.
pub(crate) fn reserve(request: &ReserveStockRequest) -> Result<Vec<(String, i64)>, Status> {
    let mut violations = FieldViolations::new();
    violations
        .check(
            is_idempotency_key(&request.reservation_id),
            "reservation_id",
            KEY,
        )
        .check(
            (1..=MAX_ITEMS).contains(&request.items.len()),
            "items",
            "must hold 1 to 100 items",
        );
    // Too many is reported once, the items left unread (as in `batch_get`).
    let items = if request.items.len() <= MAX_ITEMS {
        &request.items[..]
    } else {
        &[]
    };
    let mut seen = HashSet::new();
    for (
        i,
        ReservationItem {
            product_id,
            quantity,
        },
    ) in items.iter().enumerate()
    {
        violations
            .check(
                is_resource_id(product_id),
                &format!("items[{i}].product_id"),
                PRODUCT_ID,
            )
            .check(
                seen.insert(product_id),
                &format!("items[{i}].product_id"),
                "is repeated; give each product once",
            )
            .check(
                (1..=MAX_QUANTITY).contains(quantity),
                &format!("items[{i}].quantity"),
                "must be from 1 to 1000000000",
            );
    }
    violations.into_result()?;
    Ok(request
        .items
        .iter()
        .map(|item| (item.product_id.clone(), item.quantity))
        .collect())
}

#[cfg(test)]
mod properties;
