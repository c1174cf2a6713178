//! `grpc-timeout` values: any text parses to a timeout only when it is 1 to 8 ASCII digits
//! and a unit, never panicking (a non-ASCII last character once did); any duration is sent
//! as a value that reads back as no more than itself.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use meshmart::context::{format_grpc_timeout, parse_grpc_timeout};

fuzz_target!(|data: &[u8]| {
    // As header text; `HeaderValue::to_str` passes only visible ASCII, but the parser
    // must not depend on that.
    if let Ok(value) = std::str::from_utf8(data)
        && let Some(timeout) = parse_grpc_timeout(value)
    {
        let (digits, unit) = value.split_at(value.len() - 1);
        assert!((1..=8).contains(&digits.len()), "{value:?}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{value:?}");
        assert!(
            matches!(unit, "H" | "M" | "S" | "m" | "u" | "n"),
            "{value:?}"
        );
        round_trip(timeout);
    }
    // As a duration: 8 bytes of seconds, 4 of nanoseconds.
    if let (Some(secs), Some(nanos)) = (data.get(..8), data.get(8..12)) {
        let secs = u64::from_le_bytes(secs.try_into().unwrap_or_default());
        let nanos = u32::from_le_bytes(nanos.try_into().unwrap_or_default()) % 1_000_000_000;
        round_trip(Duration::new(secs, nanos));
    }
});

/// What we would send for `timeout` is at most 8 digits and a unit, and reads back as no
/// more than `timeout` (zero is sent as one nanosecond).
fn round_trip(timeout: Duration) {
    let sent = format_grpc_timeout(timeout);
    assert!(sent.len() <= 9, "{timeout:?} -> {sent}");
    let Some(back) = parse_grpc_timeout(&sent) else {
        panic!("{timeout:?} -> {sent}, which does not parse");
    };
    assert!(
        back <= timeout.max(Duration::from_nanos(1)),
        "{timeout:?} -> {sent} -> {back:?}"
    );
}
