//! Page tokens (AIP-158): opaque to callers, a keyset cursor inside, so pages stay stable
//! while rows are added and a token can be used again to fetch the same page.
//!
//! A token is `v1:after:<cursor>` in unpadded URL-safe base64. Each list method says what
//! its cursor is (the catalog's, a product id; the orders', a time and an order id) and how
//! long it may be, so a token longer than any this method makes is refused unread, and a
//! token is decoded only into a cursor the method itself would have made.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::validation::{FieldViolations, is_idempotency_key};

const PREFIX: &str = "v1:after:";

/// The page size of a list request that asks for none (AIP-158: `page_size` 0).
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest page; a larger `page_size` is treated as this.
pub const MAX_PAGE_SIZE: usize = 100;

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

    /// The page a list request asks for, by AIP-158: the cursor its `page_token` continues
    /// after (`None` for the first page), and its size (0 is [`DEFAULT_PAGE_SIZE`], more
    /// than [`MAX_PAGE_SIZE`] is that). A negative size, and a token this method did not make
    /// (`method`, for example `ListProducts`, names it to the caller), are added to
    /// `violations` as `page_size` and `page_token`.
    pub fn page(
        &self,
        page_size: i32,
        page_token: &str,
        method: &str,
        violations: &mut FieldViolations,
    ) -> (Option<String>, usize) {
        violations.check(page_size >= 0, "page_size", "must not be negative");
        let after = if page_token.is_empty() {
            None
        } else {
            let after = self.decode(page_token);
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

/// The longest key [`KEYS`] holds: as long as an idempotency key, which the keys of most
/// listings are shaped like (1 to 128 letters, digits or `._:-`: an order id, a decimal
/// dead-letter id).
pub const MAX_KEY_LEN: usize = 128;

/// The tokens of a listing whose cursor is a key shaped like an idempotency key.
pub const KEYS: PageTokens = PageTokens::new(MAX_KEY_LEN, is_idempotency_key);

/// The longest token [`encode`] makes.
pub const MAX_LEN: usize = KEYS.max_len();

/// [`KEYS`]' token for the page after the one ending with the item keyed `last`.
pub fn encode(last: &str) -> String {
    KEYS.encode(last)
}

/// The key a [`KEYS`] token continues after; `None` for a token no listing made.
pub fn decode(token: &str) -> Option<String> {
    KEYS.decode(token)
}

/// A listing's paging fields, as [`PageTokens::page`] checks them, for [`KEYS`] tokens.
pub fn check_paging(
    violations: &mut FieldViolations,
    page_size: i32,
    page_token: &str,
    method: &str,
) -> (Option<String>, usize) {
    KEYS.page(page_size, page_token, method, violations)
}

/// Which page of a listing that may be narrowed to one order: of that order or of all,
/// after which item, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub order_id: Option<String>,
    pub after: Option<String>,
    pub size: usize,
}

/// The page a List call with an `order_id` filter (empty for every order) asks for, its
/// paging checked as [`check_paging`] does and the order id as an idempotency key.
pub fn order_page(
    page_size: i32,
    page_token: &str,
    order_id: &str,
    method: &str,
) -> Result<OrderPage, tonic::Status> {
    let mut violations = FieldViolations::new();
    let (after, size) = check_paging(&mut violations, page_size, page_token, method);
    violations.check(
        order_id.is_empty() || is_idempotency_key(order_id),
        "order_id",
        "must be 1 to 128 letters, digits or ._:-",
    );
    violations.into_result()?;
    Ok(OrderPage {
        order_id: Some(order_id.to_owned()).filter(|id| !id.is_empty()),
        after,
        size,
    })
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
    fn page_sizes_and_tokens_follow_aip_158() {
        let page = |size, token: &str| {
            let mut violations = FieldViolations::new();
            let page = IDS.page(size, token, "ListThings", &mut violations);
            (page, violations.into_result().err())
        };
        let (first, refused) = page(0, "");
        assert_eq!(first, (None, DEFAULT_PAGE_SIZE));
        assert!(refused.is_none());
        assert_eq!(page(7, "").0, (None, 7));
        assert_eq!(page(i32::MAX, "").0, (None, MAX_PAGE_SIZE));
        let token = IDS.encode("cup");
        assert_eq!(page(1, &token).0, (Some("cup".to_owned()), 1));
        let (_, refused) = page(-1, "forged");
        let violations = crate::validation::field_violations(&refused.unwrap());
        assert_eq!(
            violations,
            [
                ("page_size".to_owned(), "must not be negative".to_owned()),
                (
                    "page_token".to_owned(),
                    "is not a token from an earlier ListThings call".to_owned()
                ),
            ]
        );
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
