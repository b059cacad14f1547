//! The cluster-mode tests, by topic.

mod binary;
mod connection;
mod fleet;
mod nonces;
mod refresh;
mod revocations;
mod server;
mod session_cap;
