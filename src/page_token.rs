//! Page tokens (AIP-158): opaque to callers, a keyset cursor inside, so pages stay stable
//! while rows are added and a token can be used again to fetch the same page.
//!
//! A token is `v1:after:<cursor>` in unpadded URL-safe base64. Each list method says what
//! its cursor is (the catalog's, a product id; the orders', a time and an order id) and how
//! long it may be, so a token longer than any this method makes is refused unread, and a
//! token is decoded only into a cursor the method itself would have made.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

const PREFIX: &str = "v1:after:";

/// The page tokens of one list method.
#[derive(Debug, Clone, Copy)]
pub struct PageTokens {
    max_cursor_len: usize,
    is_cursor: fn(&str) -> bool,
}

impl PageTokens {
    /// Tokens whose cursors are at most `max_cursor_len` bytes and pass `is_cursor`.
    pub const fn new(max_cursor_len: usize, is_cursor: fn(&str) -> bool) -> Self {
        Self {
            max_cursor_len,
            is_cursor,
        }
    }

    /// The longest token [`PageTokens::encode`] makes for a valid cursor.
    pub const fn max_len(&self) -> usize {
        (PREFIX.len() + self.max_cursor_len).div_ceil(3) * 4
    }

    /// The token for the page after the one ending at `cursor`.
    pub fn encode(&self, cursor: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{PREFIX}{cursor}"))
    }

    /// The cursor a token continues after; `None` for a token this method did not make.
    pub fn decode(&self, token: &str) -> Option<String> {
        // Anything longer is not ours, and is not worth decoding to find that out.
        if token.len() > self.max_len() {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let cursor = text.strip_prefix(PREFIX)?;
        (cursor.len() <= self.max_cursor_len && (self.is_cursor)(cursor)).then(|| cursor.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::validation::is_resource_id;

    const IDS: PageTokens = PageTokens::new(63, is_resource_id);

    #[test]
    fn round_trips_and_rejects_strangers() {
        assert_eq!(
            IDS.decode(&IDS.encode("espresso-cup")).as_deref(),
            Some("espresso-cup")
        );
        for bad in [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("v2:after:x"),
            &URL_SAFE_NO_PAD.encode("v1:after:BAD ID"),
        ] {
            assert_eq!(IDS.decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_made_before_the_move_still_decode() {
        // What the catalog handed out when its tokens were its own: still valid.
        assert_eq!(
            IDS.decode("djE6YWZ0ZXI6ZXNwcmVzc28tY3Vw").as_deref(),
            Some("espresso-cup")
        );
    }

    #[test]
    fn the_longest_cursor_fits_and_longer_tokens_are_refused_unread() {
        let longest = IDS.encode(&"a".repeat(63));
        assert!(longest.len() <= IDS.max_len());
        assert_eq!(IDS.decode(&longest), Some("a".repeat(63)));
        // A valid base64 text of a token with a longer id is refused by its length alone.
        assert_eq!(IDS.decode(&IDS.encode(&"a".repeat(64))), None);
        assert_eq!(IDS.decode(&"A".repeat(4 << 20)), None);
    }

    #[test]
    fn a_cursor_too_long_for_the_method_is_refused_even_if_valid() {
        let short = PageTokens::new(3, |cursor| !cursor.is_empty());
        assert_eq!(short.decode(&short.encode("abc")).as_deref(), Some("abc"));
        assert_eq!(short.decode(&short.encode("abcd")), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any text is either refused or the token of a valid cursor.
        #[test]
        fn any_text_decodes_to_a_valid_cursor_or_nothing(token in any::<String>()) {
            if let Some(id) = IDS.decode(&token) {
                prop_assert!(is_resource_id(&id));
                prop_assert_eq!(IDS.encode(&id), token);
            }
        }

        /// Text of the token alphabet, and any bytes behind the prefix: the same.
        #[test]
        fn near_tokens_decode_to_a_valid_cursor_or_nothing(
            token in "[A-Za-z0-9_=+/-]{0,120}",
            after in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = PREFIX.as_bytes().to_vec();
            bytes.extend(after);
            for token in [token, URL_SAFE_NO_PAD.encode(bytes)] {
                if let Some(id) = IDS.decode(&token) {
                    prop_assert!(is_resource_id(&id));
                    prop_assert_eq!(IDS.encode(&id), token);
                }
            }
        }

        /// Every valid cursor round-trips, in a token no longer than `max_len`.
        #[test]
        fn every_valid_cursor_round_trips(id in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(is_resource_id(&id));
            let token = IDS.encode(&id);
            prop_assert!(token.len() <= IDS.max_len());
            prop_assert_eq!(IDS.decode(&token), Some(id));
        }
    }
}
