//! Who is calling: the customer, as the gateway says.
//!
//! Behind the gateway the customer is the subject of the caller's JWT, which the gateway
//! forwards as [`CUSTOMER_HEADER`] after removing any copy an outside caller sent (the
//! chart's edge VirtualService), so inside the mesh the header can be believed. On one
//! machine a caller sets it itself.

use tonic::{Request, Status};

/// The header that names the calling customer.
pub const CUSTOMER_HEADER: &str = "x-meshmart-customer-id";

/// The most characters a customer id may have.
pub const MAX_LEN: usize = 128;

/// The calling customer, or UNAUTHENTICATED when the header is missing or malformed.
pub fn of<T>(request: &Request<T>) -> Result<String, Status> {
    let value = request
        .metadata()
        .get(CUSTOMER_HEADER)
        .ok_or_else(|| Status::unauthenticated(format!("no {CUSTOMER_HEADER} header")))?;
    let id = value
        .to_str()
        .ok()
        .filter(|id| is_valid(id))
        .ok_or_else(|| {
            Status::unauthenticated(format!(
                "{CUSTOMER_HEADER} must be 1 to {MAX_LEN} letters, digits or . _ - @ :"
            ))
        })?;
    Ok(id.to_owned())
}

fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(header: Option<&str>) -> Result<String, Status> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request
                .metadata_mut()
                .insert(CUSTOMER_HEADER, value.parse().unwrap());
        }
        of(&request)
    }

    #[test]
    fn the_header_names_the_customer() {
        assert_eq!(
            call(Some("alice@example.com")).unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn no_header_or_a_malformed_one_is_unauthenticated() {
        for header in [None, Some(""), Some("a b"), Some(&"x".repeat(MAX_LEN + 1))] {
            let status = call(header).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{header:?}");
        }
    }
}
