//! Request checks. Each returns every problem at once as INVALID_ARGUMENT.

use meshmart::{
    page_token::PageTokens,
    proto::{
        catalog::{CreateProductRequest, ListProductsRequest, Product, UpdateProductRequest},
        google::r#type::Money,
    },
    validation::{FieldViolations, invalid_field, is_idempotency_key, is_resource_id},
};
use tonic::Status;

use crate::store::{Price, ProductChanges};

/// ListProducts' page tokens: the cursor is the last product id of the page.
pub(crate) const PAGE_TOKENS: PageTokens = PageTokens::new(63, is_resource_id);

const MAX_DISPLAY_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2000;
/// Most paths an update mask may name. Product has three mutable fields; room is left for
/// repeats and `*`, and a mask past this is one violation, its paths not checked one by one.
pub(crate) const MAX_MASK_PATHS: usize = 16;
/// Longest part of an unknown mask path quoted back in a violation.
const MAX_QUOTED_PATH: usize = 40;

/// The id in a `products/{product_id}` name.
pub(crate) fn product_name(field: &str, name: &str) -> Result<String, Status> {
    parse_name(name)
        .map(str::to_owned)
        .ok_or_else(|| invalid_field(field, "must be products/{product_id}"))
}

/// What every product's name starts with: `products/{product_id}`.
pub(crate) const NAME_PREFIX: &str = "products/";

fn parse_name(name: &str) -> Option<&str> {
    name.strip_prefix(NAME_PREFIX)
        .filter(|id| is_resource_id(id))
}

/// The page to read: after which product, and how many.
pub(crate) fn list(request: &ListProductsRequest) -> Result<(Option<String>, usize), Status> {
    let mut violations = FieldViolations::new();
    let page = PAGE_TOKENS.page(
        request.page_size,
        &request.page_token,
        "ListProducts",
        &mut violations,
    );
    violations.into_result()?;
    Ok(page)
}

/// The fields of a new product, checked.
pub(crate) fn create(request: &CreateProductRequest) -> Result<(String, ProductChanges), Status> {
    let mut violations = FieldViolations::new();
    violations.check(
        is_resource_id(&request.product_id),
        "product_id",
        "must be 1 to 63 lowercase letters, digits or hyphens",
    );
    violations.check(
        request.request_id.is_empty() || is_idempotency_key(&request.request_id),
        "request_id",
        "must be 1 to 128 letters, digits or ._:-",
    );
    let fields = match &request.product {
        None => {
            violations.add("product", "is required");
            ProductChanges::default()
        }
        Some(product) => {
            display_name(
                &mut violations,
                "product.display_name",
                &product.display_name,
            );
            description(&mut violations, "product.description", &product.description);
            let price = price(&mut violations, "product.price", product.price.as_ref());
            ProductChanges {
                display_name: Some(product.display_name.clone()),
                description: Some(product.description.clone()),
                price,
            }
        }
    };
    violations.into_result()?;
    Ok((request.product_id.clone(), fields))
}

/// The product to update and the changes the mask selects (AIP-134).
pub(crate) fn update(request: &UpdateProductRequest) -> Result<(String, ProductChanges), Status> {
    let Some(product) = &request.product else {
        return Err(invalid_field("product", "is required"));
    };
    let mut violations = FieldViolations::new();
    let id = parse_name(&product.name);
    violations.check(
        id.is_some(),
        "product.name",
        "must be products/{product_id}",
    );

    let too_many = request
        .update_mask
        .as_ref()
        .is_some_and(|mask| mask.paths.len() > MAX_MASK_PATHS);
    let paths = if too_many {
        // Reported once, the paths left unread: a mask of a million paths costs no more.
        violations.add("update_mask", "must name at most 16 paths");
        Vec::new()
    } else {
        mask_paths(request, product)
    };
    let mut changes = ProductChanges::default();
    for path in &paths {
        match path.as_str() {
            "display_name" => {
                display_name(
                    &mut violations,
                    "product.display_name",
                    &product.display_name,
                );
                changes.display_name = Some(product.display_name.clone());
            }
            "description" => {
                description(&mut violations, "product.description", &product.description);
                changes.description = Some(product.description.clone());
            }
            "price" => {
                changes.price = price(&mut violations, "product.price", product.price.as_ref())
            }
            "name" | "available_quantity" | "create_time" | "update_time" => {
                violations.add("update_mask", format!("{path} cannot be changed"));
            }
            other => {
                violations.add(
                    "update_mask",
                    format!("{} is not a field of Product", quoted(other)),
                );
            }
        }
    }
    violations.check(
        too_many || !paths.is_empty(),
        "update_mask",
        "names no field to change",
    );
    violations.into_result()?;
    Ok((id.unwrap_or_default().to_owned(), changes))
}

/// The paths to update: those in the mask, all mutable fields for `*`, or, with no mask,
/// every mutable field the request sets to a non-default value.
fn mask_paths(request: &UpdateProductRequest, product: &Product) -> Vec<String> {
    const MUTABLE: [&str; 3] = ["display_name", "description", "price"];
    match &request.update_mask {
        Some(mask) if mask.paths.iter().any(|p| p == "*") => MUTABLE.map(str::to_owned).to_vec(),
        Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
        _ => {
            let set = [
                !product.display_name.is_empty(),
                !product.description.is_empty(),
                product.price.is_some(),
            ];
            MUTABLE
                .iter()
                .zip(set)
                .filter(|(_, set)| *set)
                .map(|(path, _)| (*path).to_owned())
                .collect()
        }
    }
}

/// An unknown mask path as quoted back to the caller: its start only, and with Rust's
/// escapes, so control characters and a path as long as the message limit stay out of the
/// violation.
fn quoted(path: &str) -> String {
    let mut start: String = path.chars().take(MAX_QUOTED_PATH).collect();
    if start.len() < path.len() {
        start.push('…');
    }
    format!("{start:?}")
}

/// Whether `value` has from `min` to `max` characters. The bytes are counted first, so a
/// string of megabytes is not walked through to count its characters.
fn has_chars(value: &str, min: usize, max: usize) -> bool {
    // A character is 1 to 4 bytes in UTF-8.
    value.len() >= min
        && value.len() <= max.saturating_mul(4)
        && (min..=max).contains(&value.chars().count())
}

fn display_name(violations: &mut FieldViolations, field: &str, value: &str) {
    violations.check(
        has_chars(value, 1, MAX_DISPLAY_NAME) && !value.trim().is_empty(),
        field,
        "must be 1 to 200 characters, not only spaces",
    );
}

fn description(violations: &mut FieldViolations, field: &str, value: &str) {
    violations.check(
        has_chars(value, 0, MAX_DESCRIPTION),
        field,
        "must be at most 2000 characters",
    );
}

fn price(violations: &mut FieldViolations, field: &str, money: Option<&Money>) -> Option<Price> {
    let Some(money) = money else {
        violations.add(field, "is required");
        return None;
    };
    let currency_ok = money.currency_code.len() == 3
        && money.currency_code.bytes().all(|b| b.is_ascii_uppercase());
    violations
        .check(
            currency_ok,
            &format!("{field}.currency_code"),
            "must be a three-letter ISO 4217 code such as EUR",
        )
        .check(
            (0..=999_999_999).contains(&money.nanos),
            &format!("{field}.nanos"),
            "must be from 0 to 999999999",
        )
        .check(
            money.units > 0 || (money.units == 0 && money.nanos > 0),
            &format!("{field}.units"),
            "the price must be more than zero",
        )
        .check(
            money.units <= 1_000_000_000,
            &format!("{field}.units"),
            "must be at most 1000000000",
        );
    Some(Price {
        currency_code: money.currency_code.clone(),
        units: money.units,
        nanos: money.nanos,
    })
}

#[cfg(test)]
mod properties;
