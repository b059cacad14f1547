//! Sessions: issuing (pairing, login, CLI), refresh with rotation and reuse
//! detection, logout and revocation, the per-user session limit, and the
//! session listing. Tokens are stateless (`session_token`); the state kept
//! here is in front of the durable [`RevocationStore`].
//!
//! # Life of a session
//!
//! A login, a pairing or a CLI issue *starts* a session: a fresh `sid` (the
//! refresh family id) and `auth_time` = now. Both are carried unchanged by
//! every token of the session.
//!
//! - **Session tokens** (`typ` session) live `[tokens] session_ttl` and are
//!   what [`SessionManager::authenticate`] accepts.
//! - **Refresh tokens** (`typ` refresh, when `[tokens] refresh = true`) live
//!   `idle_timeout`: that is the **idle limit**, a session not refreshed
//!   within it ends. Each refresh *rotates*: it returns a new session token
//!   and a new refresh token, and the presented refresh token is spent
//!   (its `jti` revoked durably).
//! - The **absolute limit**: no token of a session expires after
//!   `auth_time + absolute_timeout` (every `exp` is clamped to it), and a
//!   refresh at or after it is refused. The two limits are reported
//!   separately by [`SessionManager::info`] (PITFALLS R6).
//!
//! # Reuse detection and the grace window
//!
//! A spent refresh token presented again means two parties hold it: the
//! whole family (`sid`) is revoked and the caller gets `refresh_reused`.
//! Except within `refresh_grace` of its spending: then the *same* new pair
//! is returned again, so a response lost on the network does not look like
//! theft. (Within that window whoever holds the spent token gets the same
//! pair; the window is seconds long for that reason.) Refreshes of one
//! family are serialized by a per-`sid` lock, so two racing requests cannot
//! both rotate (PITFALLS R5). The spent `jti` is durable; the grace copy is
//! not, so after a restart any reuse revokes the family. In cluster mode
//! the fleet decides once per token through Redis, and the grace pair is
//! the same on every replica (`cluster::refresh`).
//!
//! # The per-user limit and the listing
//!
//! Each subject has at most `max_sessions_per_user` live sessions; a new one
//! evicts (revokes the `sid` of) the oldest. The index behind this and
//! behind [`SessionManager::list`] is in memory and, once
//! [`SessionManager::with_state_dir`] is called ([`SessionManager::open`] does), mirrored
//! to `sessions.jsonl` so the limit holds across restarts. Without it, a
//! restart starts the index empty (tokens stay valid or revoked exactly as
//! before; sessions reappear in it when they refresh).
//!
//! # Revocation
//!
//! Every revocation is in force in memory before the call returns
//! (PITFALLS R1). If the journal write fails, the revocation still holds in
//! memory, the call succeeds, and the store reports itself degraded: a
//! logout never fails because the disk is full.
//!
//! # Binding
//!
//! `[auth] binding` decides what issuance does with an offered `cnf`
//! (`off`: ignored; `optional`: used; `required`: needed). A refresh
//! always carries the refresh token's binding, whatever the policy, and
//! a bound refresh token is only rotated through
//! [`SessionManager::refresh_confirmed`] (the caller checks the proof).
//!
//! # Pairing
//!
//! The one-time code printed at start-up yields a session for the subject
//! `owner` with the scope `admin`: reading the code proves access to the
//! gateway's console, which is owner access. (A configured user named
//! `owner` shares that subject and its session limit.)
//!
//! # Logs
//!
//! `tracing` events with stable fields: `event` (`session_issued`,
//! `session_refreshed`, `session_revoked`, `refresh_reuse_detected`, …),
//! `sub`, `sid_prefix` (at most the first 8 characters of the `sid`),
//! `method`. Never a token, a password or a pairing code.

pub mod binding;
pub mod credentials;
pub mod revocation_store;
pub mod verified_cache;

mod error;
mod index;
mod issue;
mod open;
mod random_id;
mod refresh;
mod revoke;
mod shared;
mod types;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{AuthConfig, BindingPolicy, TokensConfig};
use crate::gateway::cluster::Cluster;
use crate::gateway::metrics::CacheLookups;
use crate::gateway::session_manager::credentials::{LoginLimiter, PairingCode, PasswordVerifier};
use crate::gateway::session_manager::revocation_store::RevocationStore;
use crate::gateway::session_token::keyring::KeyRing;
use crate::gateway::session_token::{self, Confirmation, TokenPolicy, TokenType};
pub use error::SessionError;
use index::SessionIndex;
pub use issue::NewSession;
pub use open::OpenError;
use refresh::{FamilyLocks, SpentCache};
pub use shared::SharedListing;
pub use types::{
    AdminRevoke, ClientAddr, IssueMethod, Session, SessionInfo, SessionSummary, TokenPair,
    sid_prefix,
};
use verified_cache::VerifiedCache;

/// Issues, refreshes, authenticates and revokes sessions. `Send + Sync`;
/// share it behind an `Arc`.
pub struct SessionManager {
    keyring: Arc<KeyRing>,
    store: Arc<RevocationStore>,
    clock: Arc<dyn Clock>,
    policy: TokenPolicy,
    limits: Limits,
    binding: BindingPolicy,
    /// Swapped whole when `clawgate pairing` writes a new code.
    pairing: Option<RwLock<Arc<PairingCode>>>,
    passwords: PasswordVerifier,
    login_limiter: LoginLimiter,
    index: SessionIndex,
    families: FamilyLocks,
    spent: SpentCache,
    verified: VerifiedCache,
    /// The shared server in `[cluster] mode = "redis"`; `None` standalone.
    cluster: Option<Arc<Cluster>>,
}

impl SessionManager {
    /// Builds the manager from parts the caller opened (a shared key ring,
    /// a store on another directory); [`open`](Self::open) is the usual
    /// way. Checks `tokens` and `auth` with the configuration's own rules
    /// (a `Config` that loaded has passed them already), parses the users'
    /// password hashes and creates the pairing code when `[auth] pairing =
    /// true`. No session index journal: see [`with_state_dir`](Self::with_state_dir).
    pub fn from_parts(
        tokens: &TokensConfig,
        auth: &AuthConfig,
        keyring: Arc<KeyRing>,
        store: Arc<RevocationStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        tokens.validate()?;
        auth.validate()?;
        let limits = Limits::new(tokens);
        let passwords = PasswordVerifier::new(&auth.users)?;
        let pairing = if auth.pairing {
            Some(RwLock::new(Arc::new(
                PairingCode::generate(auth).map_err(|_| OpenError::Random)?,
            )))
        } else {
            None
        };
        Ok(Self {
            keyring,
            store,
            clock,
            policy: TokenPolicy::from_config(tokens),
            binding: auth.binding,
            pairing,
            passwords,
            login_limiter: LoginLimiter::new(
                auth.login_attempts_per_user_per_client_per_minute,
                auth.login_attempts_per_user_per_minute,
            ),
            index: SessionIndex::new(limits.absolute_timeout.saturating_add(limits.leeway)),
            families: FamilyLocks::default(),
            spent: SpentCache::new(limits.refresh_grace),
            verified: VerifiedCache::new(tokens.verified_cache_entries, tokens.leeway),
            limits,
            cluster: None,
        })
    }

    /// Keeps the per-user session index in `dir` (the `[state] dir`), so
    /// the session limit holds across restarts: loads `sessions.jsonl`,
    /// drops sessions that expired or were revoked meanwhile (the
    /// revocation store is loaded first), compacts it, and mirrors every
    /// change from then on. An unreadable file is left alone and the index
    /// stays in memory only (logged); never fails.
    #[must_use]
    pub fn with_state_dir(mut self, dir: &std::path::Path) -> Self {
        let now = floor_secs(self.clock.now());
        let (journal, loaded) = match index::IndexJournal::load(dir) {
            Ok(found) => found,
            Err(reason) => {
                tracing::error!(
                    alert = "session_index_not_persisted",
                    reason = %reason,
                    "session index kept in memory only: the per-user limit restarts from zero"
                );
                return self;
            }
        };
        if loaded.bad_lines > 0 {
            tracing::warn!(
                bad_lines = loaded.bad_lines,
                file = index::JOURNAL_FILE,
                "session index: skipped unreadable lines (a torn write or damage)"
            );
        }
        for (sub, sessions) in loaded.subjects {
            // A session revoked while the gateway was down (journal lost)
            // or by its subject's revocation no longer counts.
            let live: Vec<_> = sessions
                .into_iter()
                .filter(|s| {
                    !self.store.is_revoked_at(
                        "",
                        &s.sid.to_string(),
                        &sub,
                        unix(s.created()),
                        unix(now),
                    )
                })
                .collect();
            self.index.restore(&sub, live, now);
        }
        self.index.attach(journal);
        self
    }

    /// Why the session index is not being persisted, if it is not (paths
    /// included: for the log, never for a response).
    pub fn index_issue(&self) -> Option<String> {
        self.index.journal_issue()
    }

    /// The current one-time pairing code (printed once at start-up, or
    /// the latest from `clawgate pairing`), when enabled.
    pub fn pairing_code(&self) -> Option<Arc<PairingCode>> {
        self.pairing
            .as_ref()
            .map(|p| Arc::clone(&p.read().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Makes `text` the pairing code (fresh, unused) unless it already is.
    /// Returns whether it changed; a text that is not a code changes
    /// nothing.
    pub fn replace_pairing_code(&self, text: &str) -> bool {
        let Some(slot) = &self.pairing else {
            return false;
        };
        let mut current = slot.write().unwrap_or_else(PoisonError::into_inner);
        if current.is(text) {
            return false;
        }
        match current.replaced_by(text) {
            Some(next) => {
                *current = Arc::new(next);
                true
            }
            None => false,
        }
    }

    /// Writes the current pairing code to `path` (0600), then re-reads
    /// that file every second and adopts a new code found there (what
    /// `clawgate pairing` writes). The code itself is never logged.
    pub fn spawn_pairing_file(self: Arc<Self>, path: PathBuf) -> Option<JoinHandle<()>> {
        let code = self.pairing_code()?;
        if let Err(error) = crate::secret_file::write_secret(&path, code.reveal().as_bytes()) {
            tracing::warn!(event = "pairing_code_file_failed", file = %path.display(), %error,
                "cannot write the pairing code file; `clawgate pairing` will not reach this gateway");
            return None;
        }
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(text) = tokio::fs::read_to_string(&path).await else {
                    continue;
                };
                if self.replace_pairing_code(text.trim()) {
                    tracing::info!(event = "pairing_code_replaced", file = %path.display(),
                        "a new one-time pairing code was read from the file; the previous one no longer works");
                }
            }
        }))
    }

    /// Exchanges the pairing code for a session of `owner` with scope
    /// `admin`. See [`pair_at`](Self::pair_at).
    pub fn pair(
        &self,
        offered_code: &str,
        client: impl Into<ClientAddr>,
        binding: Option<Confirmation>,
    ) -> Result<TokenPair, SessionError> {
        self.pair_at(offered_code, client, binding, self.clock.now())
    }

    /// Checks a password and starts a session with the user's scopes.
    /// Blocking (one argon2id run): call it from `spawn_blocking`. See
    /// [`login_at`](Self::login_at).
    pub fn login(
        &self,
        username: &str,
        password: &str,
        client: impl Into<ClientAddr>,
        binding: Option<Confirmation>,
    ) -> Result<TokenPair, SessionError> {
        self.login_at(username, password, client, binding, self.clock.now())
    }

    /// Starts a session for `subject` without credentials (CLI, tests).
    /// `ttl` replaces `session_ttl` for the first session token (clamped to
    /// the absolute limit). Unbound: refused with `BindingRequired` under
    /// `[auth] binding = "required"` (see [`issue_bound_at`](Self::issue_bound_at)).
    pub fn issue(
        &self,
        subject: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
        method: IssueMethod,
    ) -> Result<TokenPair, SessionError> {
        self.issue_at(subject, scopes, ttl, method, self.clock.now())
    }

    /// Rotates an unbound refresh token (a bound one needs
    /// [`refresh_confirmed`](Self::refresh_confirmed)). May block on one
    /// fsync (the spent token's revocation), and in cluster mode on one
    /// Redis call (at most `command_timeout`): call it from `spawn_blocking`.
    /// See [`refresh_at`](Self::refresh_at).
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenPair, SessionError> {
        self.refresh_at(refresh_token, self.clock.now())
    }

    /// The hot path: verifies a session token and checks the in-memory
    /// revocation set. No I/O. A bound token (`cnf`) still needs its
    /// binding checked against the request (`binding::ProofChecker`), as
    /// the bearer layer does.
    pub fn authenticate(&self, token: &str) -> Result<Session, SessionError> {
        self.authenticate_at(token, self.clock.now())
    }

    /// [`authenticate`](Self::authenticate) at `now`.
    pub fn authenticate_at(&self, token: &str, now: SystemTime) -> Result<Session, SessionError> {
        // Signature and claims first, or a cached verification of these
        // exact bytes that the ring still vouches for and that is valid at
        // `now`. Only a verified token enters that cache, and no other
        // cache below sees unauthenticated input: none can be probed or
        // filled with it.
        let claims = self
            .verified
            .get_or_verify(token, &self.keyring, now, || {
                session_token::verify_at(
                    &self.keyring,
                    &self.policy,
                    token,
                    TokenType::Session,
                    now,
                )
            })
            .map_err(SessionError::InvalidToken)?;
        // Everything below runs on every request, cached or not.
        // Then the revocation set (memory only): by jti, sid, and sub + iat.
        let revoked = self.store.is_revoked_at(
            claims.jti(),
            claims.sid(),
            claims.sub(),
            unix(claims.iat()),
            unix(now),
        );
        if revoked {
            return Err(SessionError::TokenRevoked);
        }
        // Under `required` every session is bound: an unbound token (minted
        // offline by the CLI, or before the policy changed) is refused, as
        // issuance and refresh already refuse to create one.
        if self.binding == BindingPolicy::Required && claims.cnf().is_none() {
            return Err(SessionError::BindingRequired);
        }
        Ok(Session::new(claims))
    }

    /// Counts the verified-token cache's hits and misses into `lookups`
    /// (`clawgate_token_cache_lookups_total`; the gateway passes the
    /// registered counters).
    #[must_use]
    pub fn with_cache_lookups(mut self, lookups: CacheLookups) -> Self {
        self.verified.count_into(lookups);
        self
    }

    /// The cache of verified session tokens (`[tokens]
    /// verified_cache_entries`).
    pub fn verified_cache(&self) -> &VerifiedCache {
        &self.verified
    }

    /// Ends this session: its `sid` is revoked, so its refresh token dies too.
    pub fn logout(&self, session: &Session) -> Result<(), SessionError> {
        self.logout_at(session, self.clock.now())
    }

    /// This subject's live sessions, oldest first.
    pub fn list(&self, session: &Session) -> Vec<SessionSummary> {
        self.list_at(session, self.clock.now())
    }

    /// Revokes one of this subject's sessions, named by its `sid` or the
    /// `jti` of its latest session token. `NotFound` otherwise.
    pub fn revoke_own(&self, session: &Session, target: &str) -> Result<(), SessionError> {
        self.revoke_own_at(session, target, self.clock.now())
    }

    /// Revokes a token, a session or a whole subject. `Forbidden` unless
    /// `session` has the `admin` scope.
    pub fn admin_revoke(&self, session: &Session, what: AdminRevoke) -> Result<(), SessionError> {
        self.admin_revoke_at(session, what, self.clock.now())
    }

    /// Resolves when `session` ends: at its `exp` (wall clock) or when it is
    /// revoked, whichever comes first. For closing long-lived streams.
    pub fn session_end(
        &self,
        session: &Session,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        revoke::session_end(Arc::clone(&self.store), Arc::clone(&self.clock), session)
    }

    /// The revocation store (health, subscriptions).
    pub fn store(&self) -> &Arc<RevocationStore> {
        &self.store
    }

    /// Shares state with the other replicas through `cluster` (`[cluster]
    /// mode = "redis"`).
    #[must_use]
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The shared server, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The key ring (public key export).
    pub fn keyring(&self) -> &Arc<KeyRing> {
        &self.keyring
    }

    /// The password verifier (argon2 run count, for metrics).
    pub fn password_verifier(&self) -> &PasswordVerifier {
        &self.passwords
    }

    /// The token policy (issuer, audience, leeway).
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// The `[auth] binding` policy.
    pub fn binding_policy(&self) -> BindingPolicy {
        self.binding
    }
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("refresh", &self.limits.refresh)
            .field("max_sessions_per_user", &self.limits.max_sessions)
            .field("pairing", &self.pairing.is_some())
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

/// The `[tokens]` lifetimes, clamped to the absolute limit.
#[derive(Debug, Clone, Copy)]
struct Limits {
    session_ttl: Duration,
    refresh: bool,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    refresh_grace: Duration,
    leeway: Duration,
    max_sessions: usize,
}

impl Limits {
    /// `t` has passed [`TokensConfig::validate`]: lifetimes of at least a
    /// second, `absolute_timeout` between `session_ttl` and 100 years.
    fn new(t: &TokensConfig) -> Self {
        // No token outlives the absolute limit, so longer idle or grace
        // windows mean the same as the absolute limit itself.
        Self {
            session_ttl: t.session_ttl,
            refresh: t.refresh,
            idle_timeout: t.idle_timeout.min(t.absolute_timeout),
            absolute_timeout: t.absolute_timeout,
            refresh_grace: t.refresh_grace.min(t.absolute_timeout),
            leeway: t.leeway,
            max_sessions: t.max_sessions_per_user,
        }
    }

    /// The absolute limit of a session that started at `auth_time`.
    fn absolute_end(&self, auth_time: SystemTime) -> SystemTime {
        floor_secs(auth_time) + Duration::from_secs(self.absolute_timeout.as_secs())
    }

    /// Until when a revocation of a session that started at `auth_time`
    /// matters: no token of it expires after the absolute limit (or after
    /// `known_exp`, should a token predate a shortened limit), plus leeway.
    fn family_until(&self, auth_time: SystemTime, known_exp: SystemTime) -> u64 {
        unix(self.absolute_end(auth_time).max(known_exp)).saturating_add(self.leeway.as_secs())
    }

    /// Until when a revocation made at `now` of a token or session it
    /// cannot see matters. Verification refuses any token whose `exp` is
    /// more than the absolute limit after its `auth_time`
    /// (`TokenError::LifetimeExceeded`), and `auth_time ≤ iat ≤ now +
    /// leeway` for any token accepted so far; the token is then accepted
    /// until `exp + leeway`. Hence `now + absolute_timeout + 2 × leeway`.
    fn anything_until(&self, now: SystemTime) -> u64 {
        unix(now)
            .saturating_add(self.absolute_timeout.as_secs())
            .saturating_add(self.leeway.as_secs().saturating_mul(2))
    }
}

/// Whole Unix seconds (0 before 1970).
fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `t` rounded down to a whole second, as tokens carry times: limits
/// computed from it match the minted claims exactly.
fn floor_secs(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix(t))
}

/// The subject of a paired client.
pub const PAIRED_SUBJECT: &str = "owner";
/// The scope of a paired client, and the one `admin_revoke` requires.
pub const ADMIN_SCOPE: &str = "admin";
