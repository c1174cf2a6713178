//! How an event's headers travel as NATS headers, and the bus's own headers beside them.
//!
//! A producer's headers go as they are (lowercase names). The bus adds its own under the
//! `meshmart-bus-` prefix, to a dead letter (why and where it came from) and to a replay
//! (where the event was first published), and JetStream's `Nats-Msg-Id`. Producers may use
//! neither prefix, so what a consumer gets back is exactly what was published.

use async_nats::{HeaderMap, HeaderName, HeaderValue};

use super::bus_error;
use crate::{Result, events::Headers};

/// The subject the event was published on, on a dead letter and a replay (whose own subject
/// is the group's replay subject).
pub(super) const SUBJECT: &str = "meshmart-bus-subject";
/// The event's message id, on a dead letter and a replay, whose `Nats-Msg-Id` is their own.
pub(super) const MESSAGE_ID: &str = "meshmart-bus-message-id";
/// On a dead letter: the group that gave up, the last error and the attempts made.
pub(super) const CONSUMER: &str = "meshmart-bus-consumer";
pub(super) const ERROR: &str = "meshmart-bus-error";
pub(super) const ATTEMPTS: &str = "meshmart-bus-attempts";

/// Header names the bus keeps for itself or JetStream, compared in lowercase.
const RESERVED_PREFIXES: [&str; 2] = ["meshmart-bus-", "nats-"];

fn reserved(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// `headers` as NATS headers, refusing what NATS cannot carry (a line break in a value, a
/// colon or a control character in a name) and names the bus keeps for itself: both are a
/// producer's mistake, better reported at publish than mangled on the way.
pub(super) fn to_nats(headers: &Headers) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if reserved(name) {
            return Err(bus_error(
                "publish",
                format!("header {name:?} is reserved for the event bus"),
            ));
        }
        insert(&mut map, name, value)?;
    }
    Ok(map)
}

/// Sets one header, with NATS's checks (its `From` conversions panic on bad input).
pub(super) fn insert(map: &mut HeaderMap, name: &str, value: &str) -> Result<()> {
    let header: HeaderName = name
        .parse()
        .map_err(|_| bus_error("publish", format!("invalid header name {name:?}")))?;
    let value: HeaderValue = value.parse().map_err(|_| {
        bus_error(
            "publish",
            format!("header {name:?} has a line break in its value"),
        )
    })?;
    map.insert(header, value);
    Ok(())
}

/// The producer's headers in `map`, without the bus's and JetStream's own. NATS allows a
/// name more than once; [`Headers`] keeps the last value.
pub(super) fn from_nats(map: Option<&HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    for (name, values) in map.into_iter().flat_map(HeaderMap::iter) {
        let name = name.to_string();
        if reserved(&name) {
            continue;
        }
        if let Some(value) = values.last() {
            headers.insert(name.to_ascii_lowercase(), value.as_str().to_owned());
        }
    }
    headers
}

/// One header's value, if it is there.
pub(super) fn get<'a>(map: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    map?.get_last(name).map(HeaderValue::as_str)
}

/// An error message as one header line: a NATS header value cannot hold a line break, and
/// errors with causes often have several lines. `\` doubles, so [`unescape`] is exact.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push(c),
        }
    }
    escaped
}

pub(super) fn unescape(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            plain.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => plain.push('\n'),
            Some('r') => plain.push('\r'),
            Some(other) => plain.push(other),
            None => plain.push('\\'),
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_escaping() {
        for text in ["", "plain", "two\nlines", "a\\nb", "crlf\r\n", "trailing\\"] {
            let escaped = escape(text);
            assert!(!escaped.contains(['\n', '\r']), "{escaped:?}");
            assert_eq!(unescape(&escaped), text);
        }
    }

    #[test]
    fn producer_headers_round_trip_and_reserved_names_are_refused() {
        let headers = Headers::from([
            ("traceparent".to_owned(), "00-abc-def-01".to_owned()),
            ("x-note".to_owned(), "hello".to_owned()),
        ]);
        let mut map = to_nats(&headers).unwrap();
        insert(&mut map, "Nats-Msg-Id", "m1").unwrap();
        insert(&mut map, SUBJECT, "orders.created").unwrap();
        assert_eq!(from_nats(Some(&map)), headers);
        assert_eq!(get(Some(&map), SUBJECT), Some("orders.created"));

        for name in ["nats-msg-id", "Meshmart-Bus-Subject"] {
            let bad = Headers::from([(name.to_owned(), "x".to_owned())]);
            assert!(to_nats(&bad).is_err(), "{name}");
        }
        let broken = Headers::from([("x".to_owned(), "a\nb".to_owned())]);
        assert!(to_nats(&broken).is_err());
        let colon = Headers::from([("a:b".to_owned(), "x".to_owned())]);
        assert!(to_nats(&colon).is_err());
    }
}
