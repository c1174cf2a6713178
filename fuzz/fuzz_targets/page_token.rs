//! Page tokens: any text is refused or is the token of a valid product id (and exactly the
//! token we would make for it); a valid id round-trips.

#![no_main]

use catalog::fuzzing::{MAX_PAGE_TOKEN_LEN, decode_page_token, encode_page_token};
use libfuzzer_sys::fuzz_target;
use meshmart::validation::is_resource_id;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(id) = decode_page_token(text) {
        assert!(is_resource_id(&id), "{text:?} -> {id:?}");
        assert!(text.len() <= MAX_PAGE_TOKEN_LEN, "{text:?}");
        assert_eq!(
            encode_page_token(&id),
            text,
            "{text:?} is not how {id:?} is written"
        );
    }
    if is_resource_id(text) {
        let token = encode_page_token(text);
        assert!(token.len() <= MAX_PAGE_TOKEN_LEN, "{text:?} -> {token:?}");
        assert_eq!(decode_page_token(&token).as_deref(), Some(text));
    }
});
