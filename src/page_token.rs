//! Page tokens: opaque to callers (AIP-158), a keyset cursor inside, so pages stay stable
//! while items are added and a token can be used again to fetch the same page.
//!
//! The cursor is the key of the last item of the page: a resource id (a product), an order
//! id, a decimal dead-letter id. A listing sorted by something else (time, then key) finds
//! where to go on by that item's row, so the token holds one key whatever the sort.
//! Moved here from the catalog so every service's listings share one format.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::validation::is_idempotency_key;

const PREFIX: &str = "v1:after:";
/// The longest key a token holds: as long as an idempotency key, which every key of the
/// shop's listings is shaped like (1 to 128 letters, digits or `._:-`).
pub const MAX_KEY_LEN: usize = 128;
/// Longest token [`encode`] makes: the prefix and the longest key, in unpadded base64.
pub const MAX_LEN: usize = (PREFIX.len() + MAX_KEY_LEN).div_ceil(3) * 4;

/// The token for the page after the one ending with the item keyed `last`.
pub fn encode(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{last}"))
}

/// The key a token continues after; `None` for a token no listing made. Callers check that
/// the key is one of theirs (a product id for the catalog).
pub fn decode(token: &str) -> Option<String> {
    // Anything longer is not ours, and is not worth decoding to find that out.
    if token.len() > MAX_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let key = text.strip_prefix(PREFIX)?;
    is_idempotency_key(key).then(|| key.to_owned())
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
            &URL_SAFE_NO_PAD.encode("v1:after:"),
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_longest_key_fits_and_longer_tokens_are_refused_unread() {
        let longest = encode(&"a".repeat(MAX_KEY_LEN));
        assert!(longest.len() <= MAX_LEN);
        assert_eq!(decode(&longest), Some("a".repeat(MAX_KEY_LEN)));
        // A valid base64 text of a token with a longer key is refused by its length alone.
        assert_eq!(decode(&encode(&"a".repeat(MAX_KEY_LEN + 1))), None);
        assert_eq!(decode(&"A".repeat(4 << 20)), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any text is either refused or the token of a valid key.
        #[test]
        fn any_text_decodes_to_a_valid_key_or_nothing(token in any::<String>()) {
            if let Some(id) = decode(&token) {
                prop_assert!(is_idempotency_key(&id));
                prop_assert_eq!(encode(&id), token);
            }
        }

        /// Text of the token alphabet, and any bytes behind the prefix: the same.
        #[test]
        fn near_tokens_decode_to_a_valid_key_or_nothing(
            token in "[A-Za-z0-9_=+/-]{0,120}",
            after in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = PREFIX.as_bytes().to_vec();
            bytes.extend(after);
            for token in [token, URL_SAFE_NO_PAD.encode(bytes)] {
                if let Some(id) = decode(&token) {
                    prop_assert!(is_idempotency_key(&id));
                    prop_assert_eq!(encode(&id), token);
                }
            }
        }

        /// Every valid key round-trips, in a token no longer than [`MAX_LEN`].
        #[test]
        fn every_valid_key_round_trips(id in "[A-Za-z0-9._:-]{1,128}") {
            prop_assert!(is_idempotency_key(&id));
            let token = encode(&id);
            prop_assert!(token.len() <= MAX_LEN);
            prop_assert_eq!(decode(&token), Some(id));
        }
    }
}
