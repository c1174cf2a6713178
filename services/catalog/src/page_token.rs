//! Page tokens: opaque to callers (AIP-158), a keyset cursor inside, so pages stay stable
//! while products are added and a token can be used again to fetch the same page.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use meshmart::validation::is_resource_id;

const PREFIX: &str = "v1:after:";

/// The token for the page after the one ending with `last_product_id`.
pub(crate) fn encode(last_product_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{last_product_id}"))
}

/// The product id a token continues after; `None` for a token this service did not make.
pub(crate) fn decode(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(PREFIX)?;
    is_resource_id(id).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_strangers() {
        assert_eq!(
            decode(&encode("espresso-cup")).as_deref(),
            Some("espresso-cup")
        );
        for bad in [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("v2:after:x"),
            &URL_SAFE_NO_PAD.encode("v1:after:BAD ID"),
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
