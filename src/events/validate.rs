//! What both brokers accept: subjects and filters as NATS spells them, headers that fit in
//! a NATS header block, and consumer groups with a usable name. Checked before anything is
//! stored, so that an event the one broker takes is never refused by the other.

use super::{ConsumerConfig, Outgoing};
use crate::{Error, Result};

fn refuse(what: String) -> Error {
    Error::Events(what)
}

/// One token of a subject: printable ASCII, no space, no dot, and no wildcard.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

/// A subject events are published on: dot-separated tokens, no wildcards.
pub(crate) fn subject(subject: &str) -> Result<()> {
    if subject.split('.').all(is_token) {
        Ok(())
    } else {
        Err(refuse(format!(
            "subject {subject:?}: expected dot-separated tokens of printable ASCII without wildcards"
        )))
    }
}

/// A consumer group's filter: a subject, or tokens followed by a last `>` token (`>` alone
/// is everything).
pub(crate) fn filter(filter: &str) -> Result<()> {
    let mut tokens: Vec<&str> = filter.split('.').collect();
    if tokens.last() == Some(&">") {
        tokens.pop();
    }
    if tokens.iter().all(|token| is_token(token)) {
        Ok(())
    } else {
        Err(refuse(format!(
            "subject filter {filter:?}: expected a subject, or one ending in a \">\" token"
        )))
    }
}

/// An outgoing event: its subject, a message id, and header names and values that a NATS
/// header block can carry (names lowercase, as the interface promises).
pub(crate) fn outgoing(event: &Outgoing) -> Result<()> {
    subject(&event.subject)?;
    if event.message_id.is_empty() || !event.message_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(format!(
            "message id {:?}: expected printable ASCII without spaces",
            event.message_id
        )));
    }
    for (name, value) in &event.headers {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':' && !b.is_ascii_uppercase());
        if !name_ok {
            return Err(refuse(format!(
                "header name {name:?}: expected lowercase printable ASCII without ':'"
            )));
        }
        if value.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
            return Err(refuse(format!(
                "header {name}: a value cannot hold line breaks or NUL"
            )));
        }
    }
    Ok(())
}

pub(crate) fn consumer(config: &ConsumerConfig) -> Result<()> {
    // A JetStream durable name: no dots, wildcards, spaces or path separators.
    let name_ok = !config.name.is_empty()
        && config
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !name_ok {
        return Err(refuse(format!(
            "consumer group name {:?}: expected ASCII letters, digits, '-' or '_'",
            config.name
        )));
    }
    if config.subjects.is_empty() {
        return Err(refuse(format!(
            "consumer group {}: no subjects to receive",
            config.name
        )));
    }
    for subject in &config.subjects {
        filter(subject)?;
    }
    if config.max_attempts == 0 {
        return Err(refuse(format!(
            "consumer group {}: max_attempts must be at least 1",
            config.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn subjects_and_filters() {
        for ok in ["orders.created", "a", "a-b_c.d9"] {
            subject(ok).unwrap();
            filter(ok).unwrap();
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a.*", "a.>", ">", "a\u{e9}"] {
            assert!(subject(bad).is_err(), "{bad:?}");
        }
        for ok in [">", "orders.>", "a.b.>"] {
            filter(ok).unwrap();
        }
        for bad in ["", "a.*", "*", "a.>.b", "a>", "a.b>", ".>", "a..>"] {
            assert!(filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outgoing_headers() {
        let mut event = Outgoing {
            subject: "orders.created".to_owned(),
            message_id: "e-1".to_owned(),
            headers: [("traceparent".to_owned(), "00-ab-cd-01".to_owned())].into(),
            payload: bytes::Bytes::new(),
        };
        outgoing(&event).unwrap();
        event.headers.insert("Trace".to_owned(), "x".to_owned());
        assert!(outgoing(&event).is_err());
        event.headers.remove("Trace");
        event.headers.insert("x".to_owned(), "a\nb".to_owned());
        assert!(outgoing(&event).is_err());
        event.headers.remove("x");
        event.message_id = "a b".to_owned();
        assert!(outgoing(&event).is_err());
    }

    #[test]
    fn consumer_groups() {
        let good = ConsumerConfig {
            name: "payments".to_owned(),
            subjects: vec!["orders.>".to_owned()],
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            backoff: vec![],
        };
        consumer(&good).unwrap();
        for bad in [
            ConsumerConfig {
                name: "pay.ments".to_owned(),
                ..good.clone()
            },
            ConsumerConfig {
                subjects: vec![],
                ..good.clone()
            },
            ConsumerConfig {
                subjects: vec!["orders.*".to_owned()],
                ..good.clone()
            },
            ConsumerConfig {
                max_attempts: 0,
                ..good.clone()
            },
        ] {
            assert!(consumer(&bad).is_err(), "{bad:?}");
        }
    }
}
