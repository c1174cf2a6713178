//! Request validation: every problem with a request is collected, then answered at once as
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` that names each field, so a caller can
//! fix everything in one go (AIP-193).
//!
//! The answer is bounded whatever the request: at most [`MAX_REPORTED_VIOLATIONS`] are
//! reported (then one more saying how many were left out), and every field path,
//! description and the message are cut to a few hundred bytes. The status travels in the
//! `grpc-message` and `grpc-status-details-bin` trailers, and peers refuse header blocks
//! past 8 to 16 KiB (gRPC core's soft and hard limits, hyper's default): a request with a
//! thousand bad items must still get its INVALID_ARGUMENT, not a broken stream.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Most violations one answer reports; the rest are counted in one more violation.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;
/// Longest field path reported, in bytes; ours are far shorter, this only stops a path
/// built from request data from growing the trailers.
pub const MAX_FIELD_BYTES: usize = 64;
/// Longest description reported, in bytes (ours are under 100; some quote the request).
pub const MAX_DESCRIPTION_BYTES: usize = 128;
/// Longest status message, in bytes. It is sent twice (as `grpc-message`, percent-encoded,
/// and inside the details), and the BadRequest holds every reported violation anyway.
pub const MAX_MESSAGE_BYTES: usize = 256;
/// What an answer of this module costs in trailers at most (`grpc-message` and
/// `grpc-status-details-bin`, names and values): gRPC core's soft limit for a whole header
/// block, which the limits above keep us under with room for the other trailers.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

const ELLIPSIS: &str = "…";

/// The problems found in one request.
#[derive(Debug, Default)]
pub struct FieldViolations {
    /// The first [`MAX_REPORTED_VIOLATIONS`], cut to length.
    violations: Vec<(String, String)>,
    /// How many more were found: counted, not kept, so memory stays bounded however many
    /// a caller adds.
    omitted: usize,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` (a path like `product.price.currency_code`) is wrong, and why.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        if self.violations.len() < MAX_REPORTED_VIOLATIONS {
            self.violations.push((
                truncate(field.into(), MAX_FIELD_BYTES),
                truncate(description.into(), MAX_DESCRIPTION_BYTES),
            ));
        } else {
            self.omitted = self.omitted.saturating_add(1);
        }
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

    /// How many violations were found, reported or not.
    pub fn len(&self) -> usize {
        self.violations.len().saturating_add(self.omitted)
    }

    /// `Ok` when nothing was found, otherwise the INVALID_ARGUMENT status.
    pub fn into_result(self) -> Result<(), Status> {
        if self.violations.is_empty() {
            return Ok(());
        }
        let mut message = self
            .violations
            .iter()
            .map(|(field, description)| format!("{field}: {description}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for (field, description) in self.violations {
            details.add_bad_request_violation(field, description);
        }
        if self.omitted > 0 {
            let more = format!("{} more violations were left out", self.omitted);
            // The count goes last but is never the part cut off.
            message = format!(
                "{}; {more}",
                truncate(message, MAX_MESSAGE_BYTES.saturating_sub(more.len() + 2))
            );
            // No field: it speaks of the request as a whole.
            details.add_bad_request_violation("", more);
        }
        Err(Status::with_error_details(
            Code::InvalidArgument,
            truncate(message, MAX_MESSAGE_BYTES),
            details,
        ))
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(text.floor_char_boundary(max.saturating_sub(ELLIPSIS.len())));
        text.push_str(ELLIPSIS);
    }
    text
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

/// Why `status` is not an answer [`FieldViolations::into_result`] could have given, if it is
/// not: INVALID_ARGUMENT whose BadRequest names at least one field, with at most
/// [`MAX_REPORTED_VIOLATIONS`] + 1 violations, in at most [`MAX_TRAILER_BYTES`] of trailers.
/// What the property tests and fuzz targets hold every validator to.
#[cfg(any(test, feature = "testing"))]
pub fn check_bad_request(status: &Status) -> Result<(), String> {
    if status.code() != Code::InvalidArgument {
        return Err(format!("not INVALID_ARGUMENT: {status:?}"));
    }
    let violations = field_violations(status);
    if !violations.iter().any(|(field, _)| !field.is_empty()) {
        return Err(format!("the BadRequest names no field: {status:?}"));
    }
    if violations.len() > MAX_REPORTED_VIOLATIONS + 1 {
        return Err(format!("{} violations reported", violations.len()));
    }
    let mut trailers = http::HeaderMap::new();
    status
        .add_header(&mut trailers)
        .map_err(|error| format!("not sendable as trailers: {error:?}"))?;
    let bytes: usize = trailers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_TRAILER_BYTES {
        return Err(format!("{bytes} bytes of trailers"));
    }
    Ok(())
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
    use proptest::prelude::*;

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
    fn a_million_violations_are_twenty_and_a_count() {
        let mut violations = FieldViolations::new();
        for i in 0..1_000_000 {
            violations.add(format!("product_ids[{i}]"), "is repeated");
        }
        assert_eq!(violations.len(), 1_000_000);
        // Kept, not just reported, are the first twenty only.
        assert_eq!(violations.violations.len(), MAX_REPORTED_VIOLATIONS);
        let status = violations.into_result().unwrap_err();
        check_bad_request(&status).unwrap();
        let reported = field_violations(&status);
        assert_eq!(reported.len(), MAX_REPORTED_VIOLATIONS + 1);
        assert_eq!(reported[0].0, "product_ids[0]");
        assert_eq!(reported[19].0, "product_ids[19]");
        assert_eq!(
            reported[20],
            (
                String::new(),
                "999980 more violations were left out".to_owned()
            )
        );
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
        assert!(
            status
                .message()
                .ends_with("; 999980 more violations were left out"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let mut violations = FieldViolations::new();
        violations.add("é".repeat(100), "€".repeat(1000));
        let reported = field_violations(&violations.into_result().unwrap_err());
        let (field, description) = &reported[0];
        assert!(
            field.len() <= MAX_FIELD_BYTES && field.ends_with(ELLIPSIS),
            "{field}"
        );
        assert!(field.starts_with("éé"));
        assert!(description.len() <= MAX_DESCRIPTION_BYTES);
        assert!(description.ends_with(ELLIPSIS));
        assert_eq!(truncate("short".to_owned(), 5), "short");
        assert_eq!(truncate("longer".to_owned(), 5), "lo…");
    }

    /// The largest answer there can be: every reported part at its limit, in bytes that
    /// `grpc-message` percent-encodes (three bytes each), and a count of the rest.
    #[test]
    fn the_largest_answer_fits_the_trailer_budget() {
        let mut violations = FieldViolations::new();
        for _ in 0..MAX_REPORTED_VIOLATIONS + 1 {
            violations.add("\u{1}".repeat(1000), "\u{7f}".repeat(1000));
        }
        let status = violations.into_result().unwrap_err();
        let mut trailers = http::HeaderMap::new();
        status.add_header(&mut trailers).unwrap();
        let bytes: usize = trailers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        assert!((6 * 1024..=7 * 1024).contains(&bytes), "{bytes}");
        check_bad_request(&status).unwrap();
    }

    /// Arbitrary text: any character, newlines and controls included.
    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 1..=max).prop_map(String::from_iter)
    }

    proptest! {
        /// Whatever is added, the answer is Ok exactly when nothing was, and otherwise a
        /// BadRequest of the first violations (each cut to length, or whole), a count of
        /// the rest, within the trailer budget.
        #[test]
        fn any_violations_make_a_bounded_answer(
            added in proptest::collection::vec((text(150), text(300)), 0..45),
        ) {
            let mut violations = FieldViolations::new();
            for (field, description) in &added {
                violations.add(field.as_str(), description.as_str());
            }
            prop_assert_eq!(violations.len(), added.len());
            let Err(status) = violations.into_result() else {
                prop_assert!(added.is_empty());
                return Ok(());
            };
            prop_assert!(!added.is_empty());
            if let Err(problem) = check_bad_request(&status) {
                prop_assert!(false, "{}", problem);
            }
            prop_assert!(status.message().len() <= MAX_MESSAGE_BYTES);
            let reported = field_violations(&status);
            let kept = added.len().min(MAX_REPORTED_VIOLATIONS);
            prop_assert_eq!(reported.len(), kept + usize::from(added.len() > kept));
            for ((field, description), (original_field, original_description)) in
                reported.iter().take(kept).zip(&added)
            {
                prop_assert!(is_cut_from(field, original_field, MAX_FIELD_BYTES));
                prop_assert!(is_cut_from(
                    description,
                    original_description,
                    MAX_DESCRIPTION_BYTES
                ));
            }
            if added.len() > kept {
                let more = format!("{} more violations were left out", added.len() - kept);
                prop_assert_eq!(&reported[kept], &(String::new(), more));
            }
        }
    }

    /// Whether `reported` is `original`, or a start of it cut to `max` bytes.
    fn is_cut_from(reported: &str, original: &str, max: usize) -> bool {
        reported == original
            || (original.len() > max
                && reported.len() <= max
                && reported
                    .strip_suffix(ELLIPSIS)
                    .is_some_and(|start| original.starts_with(start)))
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
