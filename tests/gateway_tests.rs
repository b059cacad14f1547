//! The gateway as a whole: one test binary (each binary links the whole
//! crate) whose modules in `tests/gateway/` drive the real HTTPS server,
//! the CLI and the HTTP layers with real rustls clients and real loopback
//! upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

mod gateway {
    mod auth_http;
    mod auth_layer;
    mod binding;
    mod cli;
    mod connection_limits;
    mod end_to_end;
    mod first_run;
    mod header_hygiene;
    mod hibernation;
    mod log_redaction;
    mod mtls_gateway;
    mod observability;
    mod operations;
    mod proxy;
    mod replay_quota;
    mod token_cache;
    mod workers;
}
