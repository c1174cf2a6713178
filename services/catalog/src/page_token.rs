//! Page tokens: opaque to callers (AIP-158), a keyset cursor inside, so pages stay stable
//! while products are added and a token can be used again to fetch the same page.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use meshmart::validation::is_resource_id;

const PREFIX: &str = "v1:after:";
/// Longest token [`encode`] makes: the prefix and a 63-byte product id, in unpadded base64.
pub(crate) const MAX_LEN: usize = (PREFIX.len() + 63).div_ceil(3) * 4;

/// The token for the page after the one ending with `last_product_id`.
pub(crate) fn encode(last_product_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{last_product_id}"))
}

/// The product id a token continues after; `None` for a token this service did not make.
pub(crate) fn decode(token: &str) -> Option<String> {
    // Anything longer is not ours, and is not worth decoding to find that out.
    if token.len() > MAX_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(PREFIX)?;
    is_resource_id(id).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    #[test]
    fn the_longest_id_fits_and_longer_tokens_are_refused_unread() {
        let longest = encode(&"a".repeat(63));
        assert!(longest.len() <= MAX_LEN);
        assert_eq!(decode(&longest), Some("a".repeat(63)));
        // A valid base64 text of a token with a longer id is refused by its length alone.
        assert_eq!(decode(&encode(&"a".repeat(64))), None);
        assert_eq!(decode(&"A".repeat(4 << 20)), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any text is either refused or the token of a valid product id.
        #[test]
        fn any_text_decodes_to_a_valid_id_or_nothing(token in any::<String>()) {
            if let Some(id) = decode(&token) {
                prop_assert!(is_resource_id(&id));
                prop_assert_eq!(encode(&id), token);
            }
        }

        /// Text of the token alphabet, and any bytes behind the prefix: the same.
        #[test]
        fn near_tokens_decode_to_a_valid_id_or_nothing(
            token in "[A-Za-z0-9_=+/-]{0,120}",
            after in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = PREFIX.as_bytes().to_vec();
            bytes.extend(after);
            for token in [token, URL_SAFE_NO_PAD.encode(bytes)] {
                if let Some(id) = decode(&token) {
                    prop_assert!(is_resource_id(&id));
                    prop_assert_eq!(encode(&id), token);
                }
            }
        }

        /// Every valid product id round-trips, in a token no longer than [`MAX_LEN`].
        #[test]
        fn every_valid_id_round_trips(id in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(is_resource_id(&id));
            let token = encode(&id);
            prop_assert!(token.len() <= MAX_LEN);
            prop_assert_eq!(decode(&token), Some(id));
        }
    }
}
