//! The behaviour suite both brokers are held to (filled in by the next commit).
