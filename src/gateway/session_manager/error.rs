//! The session manager's error: one variant per outcome a caller must
//! tell apart, each with a stable code.

use std::time::Duration;

use crate::gateway::session_manager::binding::BindingError;
use crate::gateway::session_token::TokenError;

/// Why a session operation failed.
///
/// Messages are fixed phrases (plus a user name for start-up errors): never
/// a token, a password or a pairing code. [`code`](Self::code) is stable
/// and meant for response bodies, logs and metrics labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A presented session or refresh token failed verification (format,
    /// key, signature, issuer, audience, type, or time claims). A refresh
    /// token presented as a session token, or the reverse, lands here.
    #[error("invalid token: {0}")]
    InvalidToken(#[source] TokenError),
    /// The token verifies but was revoked: logout, eviction by the per-user
    /// session limit, `revoke_own`, admin revocation, or refresh-token reuse.
    #[error("token revoked")]
    TokenRevoked,
    /// `refresh` was called while `[tokens] refresh = false`.
    #[error("refresh tokens are disabled")]
    RefreshDisabled,
    /// A spent refresh token was presented again after the grace window
    /// (or after a restart): treated as theft, and the whole session (its
    /// refresh family, `sid`) has been revoked.
    #[error("refresh token reused; the session was revoked")]
    RefreshReused,
    /// The session ended: its refresh token expired (the idle limit) or it
    /// reached its absolute limit. The client must log in or pair again.
    #[error("session expired")]
    SessionExpired,
    /// `pair` was called while `[auth] pairing = false`.
    #[error("pairing is disabled")]
    PairingDisabled,
    /// The offered pairing code is wrong.
    #[error("invalid pairing code")]
    PairingInvalid,
    /// The pairing code was already exchanged; it works once.
    #[error("the pairing code was already used")]
    PairingUsed,
    /// Too many wrong pairing codes: every offer is refused for a while.
    #[error("pairing locked after too many wrong codes; retry in {} s", retry_after.as_secs())]
    PairingLocked {
        /// Time left in the lockout.
        retry_after: Duration,
    },
    /// Too many login attempts for this user name in the current minute.
    #[error("too many login attempts; retry in {} s", retry_after.as_secs())]
    RateLimited {
        /// Time until the user's window ends.
        retry_after: Duration,
    },
    /// Unknown user or wrong password: deliberately indistinguishable.
    #[error("invalid user name or password")]
    InvalidCredentials,
    /// `[auth] binding = "required"` and no usable binding was offered (or a
    /// refresh token carries none).
    #[error("a session binding is required")]
    BindingRequired,
    /// The token is bound (`cnf`) and the request did not prove the
    /// binding: a missing or bad proof, or the wrong client certificate.
    #[error("session binding not confirmed: {0}")]
    Binding(#[source] BindingError),
    /// The session lacks the `admin` scope needed for this operation.
    #[error("the admin scope is required")]
    Forbidden,
    /// The target of `revoke_own` is not one of this subject's sessions.
    #[error("no such session")]
    NotFound,
    /// The request cannot be served as asked (an id that is empty or too
    /// long, a subject or scope that cannot go into a token, a zero TTL);
    /// the phrase says which.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Tokens could not be minted (no signing key, signing or the random
    /// generator failed): the server's fault.
    #[error("cannot mint tokens: {0}")]
    Mint(#[source] TokenError),
    /// Cluster mode: Redis could not say whether the refresh token was
    /// already spent (down, slow, black-holed). Nothing was spent: the
    /// client keeps its refresh token and retries.
    #[error("refresh is unavailable; retry")]
    RefreshUnavailable,
    /// Cluster mode: Redis could not count the new session against the
    /// per-user limit in time. Nothing was issued (fail closed); retry.
    #[error("the shared session store is unavailable; retry")]
    SessionStoreUnavailable,
}

impl SessionError {
    /// A stable snake_case code for responses, logs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidToken(_) => "invalid_token",
            Self::TokenRevoked => "token_revoked",
            Self::RefreshDisabled => "refresh_disabled",
            Self::RefreshReused => "refresh_reused",
            Self::SessionExpired => "session_expired",
            Self::PairingDisabled => "pairing_disabled",
            Self::PairingInvalid => "pairing_invalid",
            Self::PairingUsed => "pairing_used",
            Self::PairingLocked { .. } => "pairing_locked",
            Self::RateLimited { .. } => "rate_limited",
            Self::InvalidCredentials => "invalid_credentials",
            Self::BindingRequired => "binding_required",
            Self::Binding(e) => e.code(),
            Self::Forbidden => "insufficient_scope",
            Self::NotFound => "session_not_found",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Mint(_) => "mint_failed",
            Self::RefreshUnavailable => "refresh_unavailable",
            Self::SessionStoreUnavailable => "session_store_unavailable",
        }
    }

    /// How long the client should wait (`Retry-After`), for the variants
    /// that say.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::PairingLocked { retry_after } | Self::RateLimited { retry_after } => {
                Some(*retry_after)
            }
            Self::RefreshUnavailable => Some(UNAVAILABLE_RETRY),
            Self::SessionStoreUnavailable => Some(UNAVAILABLE_RETRY),
            _ => None,
        }
    }
}

/// `Retry-After` of the cluster-mode 503s.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Maps a minting failure: a draft the caller shaped badly is the caller's
/// error; anything else is the server's.
pub(super) fn mint_error(error: TokenError) -> SessionError {
    match error {
        TokenError::InvalidDraft(reason) => SessionError::InvalidRequest(reason),
        other => SessionError::Mint(other),
    }
}
