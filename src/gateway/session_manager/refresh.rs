//! Refresh: rotation, reuse detection, the grace window, and the per-family
//! lock that serializes refreshes of one session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::index::LiveSession;
use super::issue::Seed;
use super::random_id::RandomId;
use super::types::sid_prefix;
use super::{SessionError, SessionManager, TokenPair, floor_secs, unix};
use crate::config::BindingPolicy;
use crate::gateway::cluster::Cluster;
use crate::gateway::cluster::refresh::{self as cluster_refresh, Spend};
use crate::gateway::session_manager::binding::{self, BindingError};
use crate::gateway::session_manager::revocation_store::Revocation;
use crate::gateway::session_token::{
    self, Claims, Confirmation, TokenError, TokenType, VerifiedClaims,
};

impl SessionManager {
    /// [`refresh`](Self::refresh) at `now`. A bound refresh token is
    /// refused here (`Binding`): its binding can only be checked with the
    /// request, through [`refresh_confirmed_at`](Self::refresh_confirmed_at).
    pub fn refresh_at(
        &self,
        refresh_token: &str,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        self.refresh_confirmed_at(refresh_token, now, |claims| {
            binding::require_unbound(claims.cnf())
        })
    }

    /// Rotates a refresh token once `confirm` accepts its verified claims:
    /// the binding check (`binding::ProofChecker` with the request's proof
    /// and connection). Blocking like [`refresh`](Self::refresh).
    pub fn refresh_confirmed(
        &self,
        refresh_token: &str,
        confirm: impl FnOnce(&VerifiedClaims) -> Result<(), BindingError>,
    ) -> Result<TokenPair, SessionError> {
        self.refresh_confirmed_at(refresh_token, self.clock.now(), confirm)
    }

    /// [`refresh_confirmed`](Self::refresh_confirmed) at `now`.
    ///
    /// Order: verify (no state touched by unauthenticated input) → confirm
    /// the binding (a thief without the key can neither rotate the token
    /// nor trigger reuse detection) → family lock → family revoked? →
    /// spent within grace? → spent (reuse)? → absolute limit → mint →
    /// spend the old token → index. In cluster mode the "spent" question
    /// is the fleet's (see `rotate_shared`): after the local checks, one
    /// bounded Redis call, or `RefreshUnavailable` with nothing spent.
    pub fn refresh_confirmed_at(
        &self,
        refresh_token: &str,
        now: SystemTime,
        confirm: impl FnOnce(&VerifiedClaims) -> Result<(), BindingError>,
    ) -> Result<TokenPair, SessionError> {
        if !self.limits.refresh {
            return Err(SessionError::RefreshDisabled);
        }
        let now = floor_secs(now);
        let claims = session_token::verify_at(
            &self.keyring,
            &self.policy,
            refresh_token,
            TokenType::Refresh,
            now,
        )
        .map_err(|e| match e {
            // An expired refresh token is the idle limit (or the absolute
            // one it was clamped to): the session is over.
            TokenError::Expired => SessionError::SessionExpired,
            other => SessionError::InvalidToken(other),
        })?;
        confirm(&claims).map_err(SessionError::Binding)?;
        // One refresh per family at a time: two racing requests with the
        // same token cannot both pass the "not yet spent" check (R5).
        let family = self.families.lock_for(claims.sid());
        let _serialized = lock(&family);
        // A revoked family or subject wins over everything, grace included.
        if self.family_revoked(&claims, now) {
            return Err(SessionError::TokenRevoked);
        }
        if let Some(spent) = self.spent.get(claims.jti()) {
            return self.replay_spent(&claims, &spent, now);
        }
        if let Some(cluster) = &self.cluster {
            // The fleet decides: a jti spent on another replica reaches
            // this one's set within milliseconds, and that must still be
            // a grace replay there, not reuse.
            return self.rotate_shared(cluster, &claims, refresh_token, now);
        }
        if self.token_revoked(&claims, now) {
            // Spent earlier (before a restart, or past the grace copy's
            // life), or revoked by jti: either way, someone else holds it.
            return Err(self.reuse_detected(&claims, now));
        }
        self.rotate(&claims, now)
    }

    fn rotate(&self, claims: &VerifiedClaims, now: SystemTime) -> Result<TokenPair, SessionError> {
        // Mint before spending: if minting fails the client keeps a usable
        // refresh token.
        let pair = self.mint_rotation(claims, now)?;
        self.spend_locally(claims, &pair, now);
        Ok(pair)
    }

    /// The new pair of a rotation (the absolute limit checked first).
    fn mint_rotation(
        &self,
        claims: &VerifiedClaims,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        if now >= self.limits.absolute_end(claims.auth_time()) {
            return Err(SessionError::SessionExpired);
        }
        let seed = Seed {
            sub: claims.sub().to_owned(),
            scope: claims.scopes().to_vec(),
            sid: Some(claims.sid().to_owned()),
            auth_time: claims.auth_time(),
            cnf: self.carry_binding(claims.cnf())?,
            session_ttl: self.limits.session_ttl,
        };
        self.mint_pair(&seed, now)
    }

    /// Spends the old token for `pair`: its jti revoked (durably, and
    /// published to the fleet in cluster mode), the grace copy kept, the
    /// index touched.
    fn spend_locally(&self, claims: &VerifiedClaims, pair: &TokenPair, now: SystemTime) {
        self.revoke_quietly(
            Revocation::token(claims.jti(), self.spent_until(claims)),
            now,
        );
        self.spent.remember(claims.jti(), pair, now);
        let session = pair.session_claims();
        // Minted ids are always canonical 256-bit ids, so this is `Some`.
        if let Some(live) = LiveSession::minted(session, pair.live_until()) {
            self.index.refreshed(claims.sub(), live, now);
            self.touch_shared(claims.sub(), &live);
        }
        tracing::info!(
            event = "session_refreshed",
            sub = %claims.sub(),
            sid_prefix = sid_prefix(claims.sid()),
            method = "refresh",
            "session refreshed"
        );
    }

    /// The last Unix second a spent refresh token could still verify
    /// (`exp` + leeway): how long its spend must be remembered, locally
    /// and by the fleet.
    fn spent_until(&self, claims: &VerifiedClaims) -> u64 {
        unix(claims.exp()).saturating_add(self.limits.leeway.as_secs())
    }

    /// Cluster mode: the rotation is decided once for the whole fleet by
    /// `refresh.lua` (`cluster::refresh`). Order: the local checks above
    /// (family revoked, spent here) → mint the new pair → seal it under
    /// a key only the presented token yields → the script. Only a
    /// `rotated` answer spends locally; a Redis that cannot answer spends
    /// nothing anywhere we know of, so the client keeps its token and
    /// retries (if the script did run, the retry gets the stored pair).
    fn rotate_shared(
        &self,
        cluster: &Arc<Cluster>,
        claims: &VerifiedClaims,
        refresh_token: &str,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        // Spent according to this replica's journal (a rotation here or
        // one propagated from the fleet): the fleet may still grant a
        // grace replay, but must never rotate it again.
        let known_spent = self.token_revoked(claims, now);
        let (pair, blob) = if known_spent {
            (None, Vec::new())
        } else {
            let pair = self.mint_rotation(claims, now)?;
            let blob = seal_pair(refresh_token, claims.jti(), &pair, now)?;
            (Some(pair), blob)
        };
        let marker_ttl = self.spent_until(claims).saturating_sub(unix(now)).max(1);
        let args = cluster_refresh::SpendArgs {
            sid: claims.sid().to_owned(),
            sub: claims.sub().to_owned(),
            iat: unix(claims.iat()),
            jti: claims.jti().to_owned(),
            grace: self.limits.refresh_grace,
            marker_ttl: Duration::from_secs(marker_ttl),
            blob,
            known_spent,
        };
        let spend = match cluster_refresh::spend_blocking(cluster, args) {
            Ok(spend) => spend,
            Err(error) => {
                // Fail closed: without the fleet's answer a rotation here
                // could be a second one elsewhere (R5).
                cluster.metrics().unavailable(cluster_refresh::OP);
                tracing::warn!(
                    event = "refresh_unavailable",
                    kind = error.kind(),
                    sub = %claims.sub(),
                    sid_prefix = sid_prefix(claims.sid()),
                    "Redis could not answer; refresh refused, nothing spent"
                );
                return Err(SessionError::RefreshUnavailable);
            }
        };
        match (spend, pair) {
            (Spend::Rotated, Some(pair)) => {
                self.spend_locally(claims, &pair, now);
                Ok(pair)
            }
            (Spend::Grace(blob), _) => self.replay_sealed(claims, refresh_token, &blob, now),
            (Spend::Revoked, _) => Err(SessionError::TokenRevoked),
            // `Rotated` without a pair cannot be answered (the script
            // never rotates a token called known spent): reuse either way.
            (Spend::Reuse | Spend::Rotated, _) => Err(self.reuse_detected(claims, now)),
        }
    }

    /// A grace replay of a rotation another replica (or an earlier,
    /// timed-out call) made: the winner's pair, the same bytes everywhere.
    fn replay_sealed(
        &self,
        claims: &VerifiedClaims,
        refresh_token: &str,
        blob: &[u8],
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        let Some(pair) = self.open_pair(claims, refresh_token, blob) else {
            // A copy that does not open for this exact token string (or
            // no longer verifies) cannot be handed out, and the token is
            // spent: fail closed, as reuse.
            tracing::warn!(
                event = "refresh_grace_copy_unusable",
                sub = %claims.sub(),
                sid_prefix = sid_prefix(claims.sid()),
                "the fleet's grace copy cannot be opened for the presented token"
            );
            return Err(self.reuse_detected(claims, now));
        };
        // The spend must be in every journal, also when the winner's own
        // write never happened (a call that timed out after the script ran).
        if !self.token_revoked(claims, now) {
            self.revoke_quietly(
                Revocation::token(claims.jti(), self.spent_until(claims)),
                now,
            );
        }
        tracing::info!(
            event = "refresh_grace_replay",
            sub = %claims.sub(),
            sid_prefix = sid_prefix(claims.sid()),
            "spent refresh token presented within the grace window; same pair returned"
        );
        Ok(pair)
    }

    /// Opens and re-verifies a sealed pair ([`seal_pair`]).
    fn open_pair(
        &self,
        claims: &VerifiedClaims,
        refresh_token: &str,
        blob: &[u8],
    ) -> Option<TokenPair> {
        let plain = cluster_refresh::open(refresh_token, claims.jti(), blob).ok()?;
        let sealed: SealedPair = serde_json::from_slice(&plain).ok()?;
        let (session, refresh) = (Zeroizing::new(sealed.s), sealed.r.map(Zeroizing::new));
        let minted_at = UNIX_EPOCH + Duration::from_secs(sealed.at);
        let reopen = |token: &str, typ| {
            session_token::reopen_at(&self.keyring, &self.policy, token, typ, minted_at).ok()
        };
        let session = reopen(&session, TokenType::Session)?;
        let refresh = match &refresh {
            Some(token) => Some(reopen(token, TokenType::Refresh)?),
            None => None,
        };
        // Same family and subject as the presented token, or it is not
        // this token's rotation.
        let same = |c: &Claims| c.sid == claims.sid() && c.sub == claims.sub();
        if !same(session.claims()) || refresh.as_ref().is_some_and(|r| !same(r.claims())) {
            return None;
        }
        Some(TokenPair::new(session, refresh))
    }

    /// A spent token presented again: the same pair within the grace
    /// window (a lost response), reuse after it.
    fn replay_spent(
        &self,
        claims: &VerifiedClaims,
        spent: &Spent,
        now: SystemTime,
    ) -> Result<TokenPair, SessionError> {
        if now <= spent.at + self.limits.refresh_grace {
            tracing::info!(
                event = "refresh_grace_replay",
                sub = %claims.sub(),
                sid_prefix = sid_prefix(claims.sid()),
                "spent refresh token presented within the grace window; same pair returned"
            );
            return Ok(spent.pair.clone());
        }
        Err(self.reuse_detected(claims, now))
    }

    /// Theft: revokes the whole family and says so.
    fn reuse_detected(&self, claims: &VerifiedClaims, now: SystemTime) -> SessionError {
        tracing::warn!(
            event = "refresh_reuse_detected",
            sub = %claims.sub(),
            sid_prefix = sid_prefix(claims.sid()),
            "spent refresh token presented again; session revoked"
        );
        let until = self.limits.family_until(claims.auth_time(), claims.exp());
        self.revoke_quietly(Revocation::session(claims.sid(), until), now);
        if let Some(sid) = RandomId::parse(claims.sid()) {
            self.index.remove(claims.sub(), sid);
        }
        self.forget_shared(Some(claims.sub()), claims.sid());
        self.log_revoked(claims.sub(), claims.sid(), "refresh_reuse");
        SessionError::RefreshReused
    }

    /// The refresh token's binding under the current `[auth] binding`.
    /// A binding is always carried, even under `off` (which only stops
    /// new bindings): a refresh never makes a session weaker than it was.
    fn carry_binding(
        &self,
        cnf: Option<&Confirmation>,
    ) -> Result<Option<Confirmation>, SessionError> {
        match self.binding {
            BindingPolicy::Off | BindingPolicy::Optional => Ok(cnf.cloned()),
            BindingPolicy::Required => cnf.cloned().map(Some).ok_or(SessionError::BindingRequired),
        }
    }

    /// Whether the token's session or subject is revoked.
    fn family_revoked(&self, claims: &VerifiedClaims, now: SystemTime) -> bool {
        // "" names nothing: revocation ids are never empty (the store
        // refuses them), so this asks about sid and sub only.
        self.store.is_revoked_at(
            "",
            claims.sid(),
            claims.sub(),
            unix(claims.iat()),
            unix(now),
        )
    }

    /// Whether the token itself (its jti) is revoked: spent.
    fn token_revoked(&self, claims: &VerifiedClaims, now: SystemTime) -> bool {
        // As above: only the jti can match.
        self.store
            .is_revoked_at(claims.jti(), "", "", unix(claims.iat()), unix(now))
    }
}

/// The plaintext of a sealed grace copy: the mint time and both tokens.
#[derive(Serialize, Deserialize)]
struct SealedPair {
    at: u64,
    s: String,
    r: Option<String>,
}

/// Seals `pair` for the holder of `refresh_token` (cluster mode).
fn seal_pair(
    refresh_token: &str,
    jti: &str,
    pair: &TokenPair,
    now: SystemTime,
) -> Result<Vec<u8>, SessionError> {
    let sealed = SealedPair {
        at: unix(now),
        s: pair.session_token().to_owned(),
        r: pair.refresh_token().map(str::to_owned),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&sealed).map_err(|_| SEAL_FAILED)?);
    drop(Zeroizing::new(sealed.s));
    drop(sealed.r.map(Zeroizing::new));
    cluster_refresh::seal(refresh_token, jti, &plain).map_err(|_| SEAL_FAILED)
}

/// Sealing needs the OS random generator (the nonce).
const SEAL_FAILED: SessionError = SessionError::Mint(TokenError::Random);

/// Per-session (`sid`) locks. A lock lives as long as someone holds it,
/// so two refreshes of one family always get the same lock; a cache with
/// time-based eviction could drop a held lock and hand out a second one.
#[derive(Default)]
pub(super) struct FamilyLocks {
    table: Mutex<LockTable>,
}

#[derive(Default)]
struct LockTable {
    locks: HashMap<String, Weak<Mutex<()>>>,
    /// Size at which dead entries are swept (amortized O(1) per lookup).
    sweep_at: usize,
}

impl FamilyLocks {
    /// The lock of `sid` (only ever a verified token's sid).
    pub(super) fn lock_for(&self, sid: &str) -> Arc<Mutex<()>> {
        let mut table = lock(&self.table);
        if let Some(held) = table.locks.get(sid).and_then(Weak::upgrade) {
            return held;
        }
        if table.locks.len() >= table.sweep_at {
            table.locks.retain(|_, lock| lock.strong_count() > 0);
            table.sweep_at = (table.locks.len() * 2).max(MIN_SWEEP_AT);
        }
        let fresh = Arc::new(Mutex::new(()));
        table.locks.insert(sid.to_owned(), Arc::downgrade(&fresh));
        fresh
    }
}

/// The pairs handed out for spent refresh tokens, by spent `jti`, kept
/// for the grace window.
pub(super) struct SpentCache {
    grace: Duration,
    pairs: Cache<String, Arc<Spent>>,
}

/// A rotation: when the token was spent and what it was exchanged for.
pub(super) struct Spent {
    at: SystemTime,
    pair: TokenPair,
}

impl SpentCache {
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            // Capacity: a copy evicted early only turns a retry within the
            // grace window into reuse (a logout, never an acceptance).
            // 10,000 rotations within the window (1,000/s at the 10 s
            // default) is far above one gateway's refresh rate; at ~2 KB a
            // pair that is ≈ 20 MB at most.
            pairs: Cache::builder()
                .max_capacity(SPENT_CAPACITY)
                .time_to_live(grace.saturating_add(TTL_SLACK))
                .build(),
        }
    }

    fn get(&self, jti: &str) -> Option<Arc<Spent>> {
        self.pairs.get(jti)
    }

    fn remember(&self, jti: &str, pair: &TokenPair, now: SystemTime) {
        if self.grace.is_zero() {
            return;
        }
        let spent = Spent {
            at: now,
            pair: pair.clone(),
        };
        self.pairs.insert(jti.to_owned(), Arc::new(spent));
    }
}

/// Locks, recovering from poisoning: the guarded data is `()` or a table
/// every update leaves consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Most grace copies kept at once (arithmetic in `SpentCache::new`).
const SPENT_CAPACITY: u64 = 10_000;
/// Moka keeps a grace copy this much past the window on its own clock; the
/// window itself is checked on the wall clock.
const TTL_SLACK: Duration = Duration::from_secs(1);
/// Smallest lock-table size that triggers a sweep of unused locks.
const MIN_SWEEP_AT: usize = 1_024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_family_lock_is_shared_and_a_dropped_one_is_swept() {
        let locks = FamilyLocks::default();
        let held = locks.lock_for("sid-a");
        assert!(
            Arc::ptr_eq(&held, &locks.lock_for("sid-a")),
            "one lock per sid"
        );
        assert!(!Arc::ptr_eq(&held, &locks.lock_for("sid-b")));
        for i in 0..MIN_SWEEP_AT {
            drop(locks.lock_for(&format!("gone-{i}")));
        }
        let table = lock(&locks.table);
        assert!(table.locks.len() < MIN_SWEEP_AT, "dead locks swept");
        assert!(table.locks.contains_key("sid-a"), "a held lock is kept");
    }
}
