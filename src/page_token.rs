//! Page tokens: opaque to callers (AIP-158), a keyset cursor inside, so pages stay stable
//! while items are added and a token can be used again to fetch the same page.
//!
//! The cursor is the key of the last item of the page: a resource id (a product), an order
//! id, a decimal dead-letter id. A listing sorted by something else (time, then key) finds
//! where to go on by that item's row, so the token holds one key whatever the sort.
//! Moved here from the catalog so every service's listings share one format.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::validation::{FieldViolations, is_idempotency_key};

/// The page size of a List call that asks for none (`page_size` 0).
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest page a List call gets, whatever it asks for.
pub const MAX_PAGE_SIZE: usize = 100;

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

/// A List call's paging fields, checked as AIP-158 has them: a negative `page_size` and a
/// token no service here made are violations (added to `violations`); 0 is the default
/// size and anything above the maximum is the maximum. Returns the id to continue after and
/// the page size. `method` names the call in the token's violation.
pub fn check_paging(
    violations: &mut FieldViolations,
    page_size: i32,
    page_token: &str,
    method: &str,
) -> (Option<String>, usize) {
    violations.check(page_size >= 0, "page_size", "must not be negative");
    let after = if page_token.is_empty() {
        None
    } else {
        let after = decode(page_token);
        violations.check(
            after.is_some(),
            "page_token",
            &format!("is not a token from an earlier {method} call"),
        );
        after
    };
    let size = match usize::try_from(page_size).unwrap_or_default() {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    };
    (after, size)
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
    fn paging_follows_aip_158() {
        let mut violations = FieldViolations::new();
        assert_eq!(check_paging(&mut violations, 0, "", "ListX"), (None, 20));
        assert_eq!(check_paging(&mut violations, 500, "", "ListX"), (None, 100));
        assert_eq!(
            check_paging(&mut violations, 7, &encode("abc"), "ListX"),
            (Some("abc".to_owned()), 7)
        );
        assert!(violations.is_empty());
        check_paging(&mut violations, -1, "junk", "ListX");
        assert_eq!(violations.len(), 2);
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
