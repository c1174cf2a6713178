//! The keys of CreateOrder's idempotency: the order id every attempt of one call derives,
//! and the fingerprint that tells a retry from another request under the same key.

use sha2::{Digest, Sha256};

use crate::validate::NewOrderRequest;

/// The order id of `customer_id`'s CreateOrder with `request_id`: the first 128 bits of a
/// SHA-256, as 32 lowercase hex digits.
///
/// Derived, not drawn, so that concurrent attempts of one call, on any replica, insert the
/// same key and converge on one order (and one reservation, whose id it is). The digest
/// covers a version tag and both values, each prefixed with its length, so no two
/// (customer, request) pairs share an input ("ab" + "c" is not "a" + "bc"). Per customer:
/// two customers may use the same request_id. 128 bits keep a collision out of reach
/// (about 2^64 orders for an even chance) in an id that is still a valid resource id
/// (at most 63 characters) and an inventory reservation id.
pub fn order_id(customer_id: &str, request_id: &str) -> String {
    hex(&digest(&[
        b"meshmart.orders.v1.order_id",
        customer_id.as_bytes(),
        request_id.as_bytes(),
    ]))[..32]
        .to_owned()
}

/// A digest of what a CreateOrder asked for, kept with the order: the same request_id with
/// another request is ALREADY_EXISTS, not a retry. The lines are taken in product order (a
/// retry listing them otherwise asks for the same thing); the payment token is part of it,
/// so the same key with another card is not taken for a retry. Only the digest is kept.
pub(crate) fn fingerprint(request: &NewOrderRequest) -> String {
    let mut lines: Vec<_> = request.lines.iter().collect();
    lines.sort();
    let quantities: Vec<[u8; 8]> = lines.iter().map(|(_, q)| q.to_be_bytes()).collect();
    let address = &request.address;
    let mut fields: Vec<&[u8]> = vec![b"meshmart.orders.v1.CreateOrderRequest"];
    for ((product_id, _), quantity) in lines.iter().zip(&quantities) {
        fields.push(product_id.as_bytes());
        fields.push(quantity);
    }
    // An empty field ends the lines, so they cannot run into what follows.
    fields.push(&[]);
    fields.extend([
        request.payment_token.as_bytes(),
        address.recipient.as_bytes(),
        address.locality.as_bytes(),
        address.postal_code.as_bytes(),
        address.region_code.as_bytes(),
    ]);
    fields.extend(address.address_lines.iter().map(String::as_bytes));
    hex(&digest(&fields))
}

/// SHA-256 of `fields`, each prefixed with its length.
fn digest(fields: &[&[u8]]) -> Vec<u8> {
    let mut digest = Sha256::new();
    for field in fields {
        digest.update(u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
        digest.update(field);
    }
    digest.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use meshmart::{proto::orders::ShippingAddress, validation::is_resource_id};

    use super::*;

    #[test]
    fn the_id_is_a_resource_id_and_a_reservation_id_and_prefix_free() {
        let id = order_id("alice", "r-1");
        assert_eq!(id.len(), 32);
        assert!(is_resource_id(&id));
        assert!(meshmart::validation::is_idempotency_key(&id));
        assert_eq!(id, order_id("alice", "r-1"));
        assert_ne!(order_id("ab", "c"), order_id("a", "bc"));
        assert_ne!(order_id("alice", "r-1"), order_id("bob", "r-1"));
    }

    fn request(lines: &[(&str, i64)], token: &str) -> NewOrderRequest {
        NewOrderRequest {
            request_id: "r".to_owned(),
            lines: lines.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect(),
            payment_token: token.to_owned(),
            address: ShippingAddress {
                recipient: "Ada".to_owned(),
                address_lines: vec!["1 Main St".to_owned()],
                locality: "Berlin".to_owned(),
                postal_code: "10115".to_owned(),
                region_code: "DE".to_owned(),
            },
        }
    }

    #[test]
    fn the_fingerprint_ignores_line_order_and_nothing_else() {
        let base = fingerprint(&request(&[("a", 1), ("b", 2)], "tok"));
        assert_eq!(base, fingerprint(&request(&[("b", 2), ("a", 1)], "tok")));
        assert_ne!(base, fingerprint(&request(&[("a", 2), ("b", 1)], "tok")));
        assert_ne!(base, fingerprint(&request(&[("a", 1), ("b", 2)], "tok2")));
        let mut moved = request(&[("a", 1), ("b", 2)], "tok");
        moved.address.address_lines.push("Floor 2".to_owned());
        assert_ne!(base, fingerprint(&moved));
        let shown = format!("{moved:?}");
        assert!(
            !shown.contains("tok") && !shown.contains("Berlin"),
            "{shown}"
        );
    }
}
