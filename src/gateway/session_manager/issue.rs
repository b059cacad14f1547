//! Starting sessions (pairing, login, CLI issue) and minting token pairs.

use std::time::{Duration, SystemTime};

use super::error::mint_error;
use super::index::LiveSession;
use super::types::{ClientAddr, sid_prefix};
use super::{
    ADMIN_SCOPE, IssueMethod, PAIRED_SUBJECT, SessionError, SessionManager, TokenPair, floor_secs,
    unix,
};
use crate::config::BindingPolicy;
use crate::gateway::session_manager::credentials::{PairingError, RetryAfter};
use crate::gateway::session_token::{self, Claims, Confirmation, TokenDraft, TokenError};

impl SessionManager {
    /// [`pair`](Self::pair) at `now`.
    pub fn pair_at(
        &self,
        offered_code: &str,
        client: impl Into<ClientAddr>,
        binding: Option<Confirmation>,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        let new = self.pair_minted_at(offered_code, client, binding, now)?;
        Ok(self.admit_local(new))
    }

    /// [`pair_at`](Self::pair_at) up to minting: the session still has to
    /// be admitted ([`admit`](Self::admit)).
    pub fn pair_minted_at(
        &self,
        offered_code: &str,
        client: impl Into<ClientAddr>,
        binding: Option<Confirmation>,
        now: SystemTime,
    ) -> Result<NewSession, SessionError> {
        let client = client.into();
        let now = floor_secs(now);
        let code = self.pairing_code().ok_or(SessionError::PairingDisabled)?;
        // What could still fail after redemption is checked first: a
        // one-time code spent for no tokens would be lost for good.
        let cnf = self.resolve_binding(binding)?;
        self.keyring
            .signer()
            .map_err(|_| SessionError::Mint(TokenError::NoSigningKey))?;
        // PairingCode compares in constant time, counts wrong offers under
        // its lock and enforces one-time use and the lockout.
        code.redeem_at(offered_code, client.ip(), unix(now))
            .map_err(pairing_error)
            .inspect_err(|e| {
                tracing::warn!(event = "pairing_failed", code = e.code(), %client, "pairing refused");
            })?;
        let grant = Grant {
            sub: PAIRED_SUBJECT.to_owned(),
            scope: vec![ADMIN_SCOPE.to_owned()],
            session_ttl: self.limits.session_ttl,
            cnf,
        };
        self.mint_session(grant, IssueMethod::Pair, Some(client), now)
    }

    /// [`login`](Self::login) at `now`.
    pub fn login_at(
        &self,
        username: &str,
        password: &str,
        client: impl Into<ClientAddr>,
        binding: Option<Confirmation>,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        let new = self.login_minted_at(username, password, client, binding, now)?;
        Ok(self.admit_local(new))
    }

    /// [`login_at`](Self::login_at) up to minting (blocking: one argon2id
    /// run): the session still has to be admitted ([`admit`](Self::admit)).
    pub fn login_minted_at(
        &self,
        username: &str,
        password: &str,
        client: impl Into<ClientAddr>,
        binding: Option<Confirmation>,
        now: SystemTime,
    ) -> Result<NewSession, SessionError> {
        let client = client.into();
        let now = floor_secs(now);
        let cnf = self.resolve_binding(binding)?;
        // No configured user has a longer name (checked at start-up), so
        // refusing it early reveals nothing and keeps it out of the limiter.
        if username.len() > crate::config::MAX_SUBJECT_BYTES {
            return Err(SessionError::InvalidCredentials);
        }
        // The per-user limits run before argon2: past them, guessing at
        // one account costs the gateway no hashing.
        self.login_limiter
            .check_at(username, client.ip(), unix(now))
            .map_err(|RetryAfter(retry_after)| SessionError::RateLimited { retry_after })?;
        // One argon2id run and one error for unknown users and wrong
        // passwords alike. The name is not logged on failure: users type
        // passwords into the name field.
        let user = self.passwords.verify(username, password).map_err(|_| {
            tracing::info!(event = "login_failed", %client, "login refused");
            SessionError::InvalidCredentials
        })?;
        let grant = Grant {
            sub: user.name,
            scope: user.scopes,
            session_ttl: self.limits.session_ttl,
            cnf,
        };
        self.mint_session(grant, IssueMethod::Login, Some(client), now)
    }

    /// [`issue`](Self::issue) at `now`.
    pub fn issue_at(
        &self,
        subject: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
        method: IssueMethod,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        self.issue_bound_at(subject, scopes, ttl, method, None, now)
    }

    /// [`issue_at`](Self::issue_at) with a sender binding. Under
    /// `[auth] binding = "required"` an unbound issue is refused.
    pub fn issue_bound_at(
        &self,
        subject: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
        method: IssueMethod,
        binding: Option<Confirmation>,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        let new = self.issue_minted_at(subject, scopes, ttl, method, binding, now)?;
        Ok(self.admit_local(new))
    }

    /// [`issue_bound_at`](Self::issue_bound_at) up to minting: the session
    /// still has to be admitted ([`admit`](Self::admit)).
    pub fn issue_minted_at(
        &self,
        subject: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
        method: IssueMethod,
        binding: Option<Confirmation>,
        now: SystemTime,
    ) -> Result<NewSession, SessionError> {
        let grant = Grant {
            sub: subject.to_owned(),
            scope: scopes,
            session_ttl: ttl.unwrap_or(self.limits.session_ttl),
            cnf: self.resolve_binding(binding)?,
        };
        self.mint_session(grant, method, None, floor_secs(now))
    }

    /// Applies `[auth] binding` to what the client offered.
    pub(super) fn resolve_binding(
        &self,
        offered: Option<Confirmation>,
    ) -> Result<Option<Confirmation>, SessionError> {
        // An empty confirmation binds nothing: session_token drops it.
        let offered = offered.filter(|c| c.kpid.is_some() || c.x5t_s256.is_some());
        match self.binding {
            BindingPolicy::Off => Ok(None),
            BindingPolicy::Optional => Ok(offered),
            BindingPolicy::Required => offered.map(Some).ok_or(SessionError::BindingRequired),
        }
    }

    /// Mints the first pair of a new session; nothing is recorded yet.
    fn mint_session(
        &self,
        grant: Grant,
        method: IssueMethod,
        client: Option<ClientAddr>,
        now: SystemTime,
    ) -> Result<NewSession, SessionError> {
        let seed = Seed {
            sub: grant.sub,
            scope: grant.scope,
            sid: None,
            auth_time: now,
            cnf: grant.cnf,
            session_ttl: grant.session_ttl,
        };
        let pair = self.mint_pair(&seed, now)?;
        Ok(NewSession {
            pair,
            method,
            client,
            now,
        })
    }

    /// Records a minted session in this gateway's index (evicting the
    /// subject's oldest sessions beyond the limit), logs it and hands out
    /// its pair: the standalone path, unchanged.
    pub(super) fn admit_local(&self, new: NewSession) -> TokenPair {
        let NewSession {
            pair,
            method,
            client,
            now,
        } = new;
        let claims = pair.session_claims();
        let live = LiveSession::minted(claims, pair.live_until());
        log_issued(claims, method, client);
        // Minted ids are always canonical 256-bit ids, so `live` is `Some`.
        if let Some(live) = live {
            let evicted = self
                .index
                .add(&claims.sub, live, self.limits.max_sessions, now);
            for old in evicted {
                self.evict(&claims.sub, &old, now);
            }
        }
        pair
    }

    /// Mints a session token and, when enabled, a refresh token for the
    /// same session, each `exp` clamped to the session's absolute limit.
    pub(super) fn mint_pair(
        &self,
        seed: &Seed,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        let end = self.limits.absolute_end(seed.auth_time);
        let session_ttl = clamp_ttl(seed.session_ttl, now, end)?;
        let draft = seed.draft(TokenDraft::session(&seed.sub, session_ttl));
        let draft = match &seed.sid {
            Some(sid) => draft.with_sid(sid.clone()),
            None => draft,
        };
        let session =
            session_token::mint_at(&self.keyring, &self.policy, draft, now).map_err(mint_error)?;
        let refresh = if self.limits.refresh {
            let ttl = clamp_ttl(self.limits.idle_timeout, now, end)?;
            // Same family: the sid the session token was minted with.
            let draft = seed
                .draft(TokenDraft::refresh(&seed.sub, ttl))
                .with_sid(session.claims().sid.clone());
            let refresh = session_token::mint_at(&self.keyring, &self.policy, draft, now)
                .map_err(mint_error)?;
            Some(refresh)
        } else {
            None
        };
        Ok(TokenPair::new(session, refresh))
    }
}

/// The `session_issued` event of an admitted session (either path).
pub(super) fn log_issued(claims: &Claims, method: IssueMethod, client: Option<ClientAddr>) {
    tracing::info!(
        event = "session_issued",
        sub = %claims.sub,
        sid_prefix = sid_prefix(&claims.sid),
        method = method.as_str(),
        client = client.map(tracing::field::display),
        "session issued"
    );
}

/// A session minted but not yet admitted: its pair is handed out only by
/// [`SessionManager::admit`], once the session counts against its
/// subject's limit (in cluster mode, the fleet's).
#[must_use = "a minted session is handed out only once admitted"]
pub struct NewSession {
    pub(super) pair: TokenPair,
    pub(super) method: IssueMethod,
    pub(super) client: Option<ClientAddr>,
    pub(super) now: SystemTime,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Who a new session is for.
struct Grant {
    sub: String,
    scope: Vec<String>,
    session_ttl: Duration,
    cnf: Option<Confirmation>,
}

/// What every token of one session shares, plus the next session token's
/// lifetime.
pub(super) struct Seed {
    pub(super) sub: String,
    pub(super) scope: Vec<String>,
    /// `None` starts a new session (a fresh `sid`).
    pub(super) sid: Option<String>,
    pub(super) auth_time: SystemTime,
    pub(super) cnf: Option<Confirmation>,
    pub(super) session_ttl: Duration,
}

impl Seed {
    fn draft(&self, draft: TokenDraft) -> TokenDraft {
        let draft = draft
            .with_scope(self.scope.iter().cloned())
            .with_auth_time(self.auth_time);
        match &self.cnf {
            Some(cnf) => draft.with_cnf(cnf.clone()),
            None => draft,
        }
    }
}

/// `wanted`, cut so the token expires no later than `end` (whole seconds).
fn clamp_ttl(wanted: Duration, now: SystemTime, end: SystemTime) -> Result<Duration, SessionError> {
    if wanted.as_secs() == 0 {
        return Err(SessionError::InvalidRequest("ttl must be at least 1s"));
    }
    let left = end.duration_since(now).unwrap_or(Duration::ZERO).as_secs();
    match wanted.as_secs().min(left) {
        0 => Err(SessionError::SessionExpired),
        secs => Ok(Duration::from_secs(secs)),
    }
}

fn pairing_error(error: PairingError) -> SessionError {
    match error {
        PairingError::Invalid => SessionError::PairingInvalid,
        PairingError::AlreadyUsed => SessionError::PairingUsed,
        PairingError::LockedOut { retry_after } => SessionError::PairingLocked { retry_after },
    }
}
