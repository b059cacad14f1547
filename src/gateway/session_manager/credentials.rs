//! What is exchanged for tokens: the one-time pairing code, user passwords
//! (argon2id), and the rate limits in front of both.
//!
//! - [`PairingCode`]: printed once at start-up, redeemed once at
//!   `/auth/pair`, compared in constant time; a client address is locked
//!   out after `[auth] pairing_max_attempts_per_client` wrong codes, and
//!   everyone after `pairing_max_attempts`, for `pairing_lockout`.
//! - [`PasswordVerifier`]: the `[[auth.users]]` hashes, parsed at start-up;
//!   an unknown user name costs the same argon2id work and returns the same
//!   error as a wrong password.
//! - [`hash_password`]: what `clawgate hash-password` prints.
//! - [`RateLimiter`]: a fixed one-minute window per key (client address for
//!   `/auth/*`), with bounded memory; [`LoginLimiter`]: two of them for
//!   logins, per user name and client address under a per-user ceiling.
//!
//! Nothing here knows about HTTP; time comes in as Unix seconds (`_at`
//! forms) so tests inject it.

mod pairing;
mod password;
mod rate_limit;

pub use pairing::{PairingCode, PairingError};
pub use password::{
    PRODUCTION_PARAMS, PasswordVerifier, VerifiedUser, hash_password,
    insecure_hash_password_for_tests,
};
pub use rate_limit::{ClientAddrKey, LoginLimiter, RateLimiter, RetryAfter, client_addr_key};

/// Why a credential operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Unknown user or wrong password. Deliberately one variant with one
    /// message: neither the client nor the caller can tell the two apart.
    #[error("invalid user name or password")]
    InvalidCredentials,
    /// A configured password hash cannot be used; a start-up error that
    /// names the user, never the hash.
    #[error(
        "[auth.users] password_hash of user {user:?} is not usable ({problem}); \
         make one with `clawgate hash-password`"
    )]
    BadHash {
        /// The user whose entry is wrong.
        user: String,
        /// What is wrong, as a fixed phrase.
        problem: &'static str,
    },
    /// Hashing a new password failed.
    #[error("password hashing failed: {0}")]
    Hashing(#[source] argon2::password_hash::Error),
    /// The operating system's random generator failed.
    #[error("the system random number generator failed")]
    Random,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests;
