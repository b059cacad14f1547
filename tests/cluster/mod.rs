//! The cluster-mode tests, by topic.

mod binary;
mod connection;
mod fleet;
mod refresh;
mod revocations;
mod server;
mod nonces;
mod session_cap;
