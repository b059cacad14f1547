//! clawgate: a TLS 1.3 gateway with stateless signed sessions.
//!
//! ```text
//! TCP accept ─► TLS 1.3 handshake (rustls, cert from CertificateManager)
//!           ─► HTTP (hyper via axum; HTTP/1.1 and HTTP/2 by ALPN)
//!           ─► security headers layer (HSTS on every response, errors included)
//!           ─► route: /auth/*, /.well-known/*, /health  → handled locally
//!                     everything else                  → auth layer → upstream
//! auth layer: Authorization: Bearer v4.public.… → signature + claims check
//!             (KeyRing, no I/O) → revocation check (moka, in memory)
//!             → binding check of bound tokens (cnf: Clawgate-Proof signed
//!               by the client key, or the client certificate)
//!             → replay check for unsafe methods (nonce + timestamp, moka)
//!             → request extensions carry the verified Session
//! ```
//!
//! Dependencies flow one way: `config` ← TLS, certificates, keys, tokens ←
//! sessions, replay ← `gateway` HTTP composition ← the `clawgate` binary.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)
)]

pub mod binding_client;
pub mod clock;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod secret_file;
#[cfg(test)]
mod test_logs;

pub use config::Config;
pub use error::Error;
