//! Checks of requests (INVALID_ARGUMENT, every problem at once) and of incoming events
//! (a permanent handler error: an event that contradicts itself never succeeds).

use meshmart::{
    events::HandlerError,
    proto::events::{EventMetadata, ShipmentRequested, ShippingAddress},
    validation::{invalid_field, is_idempotency_key, is_resource_id},
};
use tonic::Status;

use crate::store::Page;

/// A shipment's lines: product id and quantity.
pub(crate) type Lines = Vec<(String, i64)>;

/// Most units of one product a line may ship.
const MAX_QUANTITY: i64 = 1_000_000_000;
/// Most lines a shipment may have (an order's limit is lower).
const MAX_LINES: usize = 1000;

/// The id in a `shipments/{shipment_id}` name.
pub(crate) fn shipment_name(name: &str) -> Result<String, Status> {
    name.strip_prefix("shipments/")
        .filter(|id| is_resource_id(id))
        .map(str::to_owned)
        .ok_or_else(|| invalid_field("name", "must be shipments/{shipment_id}"))
}

/// The page a ListShipments call asks for.
pub(crate) fn list(page_size: i32, page_token: &str, order_id: &str) -> Result<Page, Status> {
    meshmart::page_token::order_page(page_size, page_token, order_id, "ListShipments")
}

/// The metadata of an event, whole: an event id and the order it is about.
pub(crate) fn metadata(metadata: Option<&EventMetadata>) -> Result<EventMetadata, HandlerError> {
    match metadata {
        Some(metadata)
            if !metadata.event_id.is_empty() && is_idempotency_key(&metadata.order_id) =>
        {
            Ok(metadata.clone())
        }
        _ => Err(HandlerError::Permanent(
            "the event lacks its metadata, an event id or a valid order id".to_owned(),
        )),
    }
}

/// What a ShipmentRequested asks to ship, and where: lines of real products and positive
/// quantities, and an address with a region.
pub(crate) fn shipment(
    request: &ShipmentRequested,
) -> Result<(Lines, &ShippingAddress), HandlerError> {
    let invalid = |why: &str| Err(HandlerError::Permanent(format!("the shipment {why}")));
    if request.lines.is_empty() || request.lines.len() > MAX_LINES {
        return invalid("must have 1 to 1000 lines");
    }
    let mut lines = Vec::with_capacity(request.lines.len());
    for line in &request.lines {
        if !is_resource_id(&line.product_id) || !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return invalid("has a line without a product id or with a quantity out of range");
        }
        lines.push((line.product_id.clone(), line.quantity));
    }
    let Some(address) = &request.address else {
        return invalid("has no address");
    };
    // Only the region is said: the rest of an address never goes into an error or a log.
    let region = address.region_code.as_bytes();
    if region.len() != 2 || !region.iter().all(u8::is_ascii_uppercase) {
        return invalid("address has no two-letter region code");
    }
    Ok((lines, address))
}

#[cfg(test)]
mod tests {
    use meshmart::proto::events::OrderLine;

    use super::*;

    #[test]
    fn a_shipment_needs_lines_and_a_region() {
        let mut request = ShipmentRequested {
            metadata: None,
            lines: vec![OrderLine {
                product_id: "espresso-cup".to_owned(),
                quantity: 2,
                unit_price: None,
            }],
            address: Some(ShippingAddress {
                region_code: "DE".to_owned(),
                ..ShippingAddress::default()
            }),
        };
        assert!(shipment(&request).is_ok());
        request.address.as_mut().unwrap().region_code = "de".to_owned();
        assert!(shipment(&request).is_err());
        request.address = None;
        assert!(shipment(&request).is_err());
        assert!(shipment_name("shipments/a-1").is_ok());
        assert!(shipment_name("shipments/").is_err());
    }
}
