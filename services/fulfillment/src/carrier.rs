//! The simulated carrier, deterministic: it refuses the postal code `00000` (the test
//! address rule in proto/meshmart/fulfillment/v1/fulfillment.proto) and otherwise takes the
//! parcel, with a tracking number derived from the shipment id, so asking again for the
//! same shipment gives the same number.

/// What the customer reads when the carrier refuses.
pub(crate) const UNDELIVERABLE: &str = "the carrier does not deliver to this address";

/// The carrier's answer for a shipment to `postal_code`: its tracking number, or why not.
pub(crate) fn hand_over(shipment_id: &str, postal_code: &str) -> Result<String, &'static str> {
    if postal_code.trim() == "00000" {
        return Err(UNDELIVERABLE);
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(shipment_id.as_bytes());
    let number: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect();
    Ok(format!("MM{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_00000_and_numbers_the_rest_by_shipment() {
        assert_eq!(hand_over("s1", "00000"), Err(UNDELIVERABLE));
        let number = hand_over("s1", "10115").unwrap();
        assert_eq!(number.len(), 18);
        assert_eq!(hand_over("s1", "75001").unwrap(), number);
        assert_ne!(hand_over("s2", "10115").unwrap(), number);
    }
}
