//! The gateway: composition root plus the pieces it wires together.
//!
//! `mod.rs`, `server.rs` and `http/` are composition code and contain no
//! crypto; the sibling files own TLS policy, certificates, keys, tokens,
//! sessions and replay protection.

pub mod certificate_manager;
pub mod credentials;
pub mod http;
pub mod keyring;
pub mod metrics;
pub mod replay_protection;
pub mod revocation_store;
pub mod server;
pub mod session_manager;
pub mod session_token;
pub mod tls_config;
