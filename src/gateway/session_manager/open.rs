//! Opening a session manager from its configuration: the one place that
//! opens the key ring, loads the revocation store and the session index,
//! and builds the manager over them.

use std::sync::Arc;

use super::SessionManager;
use crate::clock::Clock;
use crate::config::{AuthConfig, ConfigError, StateConfig, TokensConfig};
use crate::gateway::session_manager::credentials::CredentialError;
use crate::gateway::session_manager::revocation_store::{OpenReport, RevocationStore};
use crate::gateway::session_token::keyring::{KeyError, KeyRing};

/// Why a session manager could not be opened (start-up only; no request
/// can meet one of these).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// `[tokens]` or `[auth]` breaks a configuration rule (a `Config` that
    /// loaded never does); the message names the key and the user, never a
    /// hash.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The keys directory could not be opened or initialised.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The users' password hashes could not be prepared (the random
    /// generator failed while making the unknown-user stand-in).
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The system random generator failed (pairing code).
    #[error("the system random number generator failed")]
    Random,
}

impl SessionManager {
    /// Opens everything a manager stands on, in this order: the key ring in
    /// `[tokens] keys_dir` (a signing key is created if there is none, made
    /// active at `clock`'s now), the revocation store in `[state] dir`, then
    /// the session index journal beside it. Call it before the first
    /// connection is accepted: a store loaded after traffic starts
    /// re-admits revoked tokens (PITFALLS R2), and the index skips what the
    /// store has revoked, so it comes second.
    pub fn open(
        tokens: &TokensConfig,
        auth: &AuthConfig,
        state: &StateConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        // Checked before anything is created on disk.
        tokens.validate()?;
        auth.validate()?;
        let keyring = Arc::new(KeyRing::open_or_init_at(&tokens.keys_dir, clock.now())?);
        let (store, report) = RevocationStore::open(&state.dir, Arc::clone(&clock));
        log_store_report(&report);
        let manager = Self::from_parts(tokens, auth, keyring, Arc::new(store), clock)?;
        Ok(manager.with_state_dir(&state.dir))
    }
}

/// Logs what opening the revocation store found.
/// One event for the whole report; WARN when lines were skipped (a torn
/// last line from an interrupted write, or damage).
fn log_store_report(report: &OpenReport) {
    if report.torn_tail || report.corrupt_lines > 0 {
        tracing::warn!(
            event = "revocation_store_loaded",
            loaded = report.loaded,
            expired_dropped = report.expired_dropped,
            corrupt_lines = report.corrupt_lines,
            torn_tail = report.torn_tail,
            "revocations loaded; unreadable journal lines skipped (interrupted write or damage)"
        );
    } else {
        tracing::info!(
            event = "revocation_store_loaded",
            loaded = report.loaded,
            expired_dropped = report.expired_dropped,
            corrupt_lines = report.corrupt_lines,
            torn_tail = report.torn_tail,
            "revocations loaded before accepting connections"
        );
    }
}
