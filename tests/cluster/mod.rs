//! The cluster-mode tests, by topic.

mod binary;
mod connection;
mod fleet;
mod refresh;
mod revocations;
mod server;
