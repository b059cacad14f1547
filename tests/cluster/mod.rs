//! The cluster-mode tests, by topic.

mod connection;
mod fleet;
mod nonces;
mod session_cap;
