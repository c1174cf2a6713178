//! Request validation: every problem with a request is collected, then answered at once as
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` that names each field, so a caller can
//! fix everything in one go (AIP-193).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The problems found in one request.
#[derive(Debug, Default)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` (a path like `product.price.currency_code`) is wrong, and why.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        self.violations.push((field.into(), description.into()));
        self
    }

    /// Records a violation when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) -> &mut Self {
        if !ok {
            self.add(field, description);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok` when nothing was found, otherwise the INVALID_ARGUMENT status.
    pub fn into_result(self) -> Result<(), Status> {
        if self.violations.is_empty() {
            return Ok(());
        }
        let message = self
            .violations
            .iter()
            .map(|(field, description)| format!("{field}: {description}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for (field, description) in self.violations {
            details.add_bad_request_violation(field, description);
        }
        Err(Status::with_error_details(
            Code::InvalidArgument,
            message,
            details,
        ))
    }
}

/// INVALID_ARGUMENT for a single bad field.
pub fn invalid_field(field: &str, description: &str) -> Status {
    let mut violations = FieldViolations::new();
    violations.add(field, description);
    violations
        .into_result()
        .err()
        .unwrap_or_else(|| Status::invalid_argument(description.to_owned()))
}

/// Whether `id` is a resource id in the AIP-122 style: 1 to 63 lowercase letters, digits
/// and hyphens, starting with a letter or digit and not ending with a hyphen.
pub fn is_resource_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && !id.ends_with('-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Whether `key` is usable as a caller-chosen idempotency key (`request_id`,
/// `reservation_id`): 1 to 128 letters, digits and `._:-`. UUIDs and order ids both fit.
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The field violations carried by a status, as `(field, description)` pairs; for tests
/// and clients that want to show them.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_become_one_bad_request() {
        let mut violations = FieldViolations::new();
        violations
            .check(true, "ok", "never recorded")
            .check(false, "name", "must be products/{product_id}")
            .add("page_size", "must not be negative");
        let status = violations.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            field_violations(&status),
            vec![
                (
                    "name".to_owned(),
                    "must be products/{product_id}".to_owned()
                ),
                ("page_size".to_owned(), "must not be negative".to_owned()),
            ]
        );
        assert!(FieldViolations::new().into_result().is_ok());
    }

    #[test]
    fn ids_and_keys() {
        for good in ["a", "espresso-cup", "x1", &"a".repeat(63)] {
            assert!(is_resource_id(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Cup", "a_b", "a/b", &"a".repeat(64)] {
            assert!(!is_resource_id(bad), "{bad}");
        }
        assert!(is_idempotency_key("7f1c9a3e-5b2d-4e8f-9a01-23456789abcd"));
        assert!(is_idempotency_key("order:42.1_A"));
        assert!(!is_idempotency_key(""));
        assert!(!is_idempotency_key("a b"));
        assert!(!is_idempotency_key(&"k".repeat(129)));
    }
}
