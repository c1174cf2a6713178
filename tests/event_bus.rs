//! The event bus's behaviour suite, run against each broker (filled in by the next commit).
