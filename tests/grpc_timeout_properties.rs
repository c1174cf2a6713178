//! Properties of the `grpc-timeout` header codec on arbitrary input: parsing never panics
//! and accepts exactly what the gRPC spec allows; formatting always yields a value that
//! parses back to no more than the original duration, in at most 8 digits.

use std::time::Duration;

use meshmart::context::{format_grpc_timeout, parse_grpc_timeout};
use proptest::prelude::*;

/// What a `grpc-timeout` of `digits` and `unit` means, worked out independently of the
/// parser: `TimeoutValue` is 1 to 8 ASCII digits, `TimeoutUnit` one of `H M S m u n`.
fn expected(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if !(1..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Strings near the valid ones, which random text almost never is: digits (ASCII or
/// other scripts' digits), then a unit or any other character, ASCII or not.
fn near_valid() -> impl Strategy<Value = String> {
    let digits = prop_oneof![
        "[0-9]{0,10}",
        // Other scripts' digits: `char::is_numeric`, not ASCII.
        "[0-9٠-٩０-９]{0,9}",
    ];
    let unit = prop_oneof![
        "[HMSmun]",
        Just("é".to_owned()),
        Just("ñ".to_owned()),
        Just("€".to_owned()),
        Just("😀".to_owned()),
        any::<char>().prop_map(String::from),
    ];
    (digits, unit, "[ +-]?").prop_map(|(digits, unit, sign)| format!("{sign}{digits}{unit}"))
}

/// Any duration, weighted so each unit of `format_grpc_timeout` gets its share.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0..200_000_000u64).prop_map(Duration::from_nanos),
        (0..200_000_000u64).prop_map(Duration::from_micros),
        (0..200_000_000u64).prop_map(Duration::from_millis),
        (0..400_000_000_000u64).prop_map(Duration::from_secs),
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(secs, nanos)| Duration::new(secs, nanos)),
        Just(Duration::ZERO),
        Just(Duration::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any text, any characters: never a panic, and `Some` exactly for the valid values.
    #[test]
    fn parsing_any_text_matches_the_spec(value in any::<String>()) {
        prop_assert_eq!(parse_grpc_timeout(&value), expected(&value));
    }

    /// Regression: a value whose last character is not ASCII used to panic (the unit was
    /// cut off as one byte, splitting the character).
    #[test]
    fn parsing_near_valid_text_matches_the_spec(value in near_valid()) {
        prop_assert_eq!(parse_grpc_timeout(&value), expected(&value));
    }

    /// What we send is at most 8 digits and a unit, and reads back as no more than the
    /// duration (zero, which peers disagree on, is sent as the shortest timeout there is),
    /// short of it by less than one of its unit unless it is past the longest timeout
    /// that can be written.
    #[test]
    fn formatting_round_trips_down(timeout in duration()) {
        let value = format_grpc_timeout(timeout);
        let (digits, unit) = value.split_at(value.len() - 1);
        prop_assert!((1..=8).contains(&digits.len()), "{}", value);
        prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{}", value);
        let parsed = parse_grpc_timeout(&value);
        prop_assert!(parsed.is_some(), "{} does not parse", value);
        let parsed = parsed.unwrap_or_default();
        prop_assert!(parsed <= timeout.max(Duration::from_nanos(1)), "{:?} -> {}", timeout, value);
        let one = match unit {
            "n" => Duration::from_nanos(1),
            "u" => Duration::from_micros(1),
            "m" => Duration::from_millis(1),
            "S" => Duration::from_secs(1),
            _ => Duration::from_secs(3600),
        };
        let longest = Duration::from_secs(99_999_999 * 3600);
        if timeout <= longest {
            prop_assert!(timeout.saturating_sub(parsed) < one, "{:?} -> {}", timeout, value);
        } else {
            prop_assert_eq!(parsed, longest);
        }
    }
}

#[test]
fn non_ascii_units_are_rejected() {
    for value in ["1é", "10€", "99999999😀", "é", "5\u{301}"] {
        assert_eq!(parse_grpc_timeout(value), None, "{value}");
    }
}
