//! The cache of verified session tokens: a token whose signature and claims
//! passed [`session_token::verify_at`] once is not verified again while it
//! is valid (the Ed25519 check is most of an authenticated request's CPU).
//!
//! # Invariants
//!
//! - **Key**: SHA-256 of the exact token bytes, never a claim. A hit needs
//!   the same bytes that were verified; a claim (`jti`, `sid`, `kid`) is
//!   attacker-chosen until the signature is checked, so keying by one
//!   would let a forged token borrow a genuine one's entry.
//! - **Only verified tokens go in**: an entry is inserted after
//!   `verify_at` succeeded, never before and never on failure, so garbage,
//!   forgeries, unknown kids and expired tokens cannot fill or probe it.
//! - **Time**: on every hit `exp`, `nbf` and `iat` are checked against the
//!   caller's clock (the verifier's clock, same leeway), and moka drops an
//!   entry no later than the token's `exp` + leeway. A hit that fails them
//!   is a miss (the entry is dropped), and the full verification then
//!   gives the precise refusal.
//! - **Keys**: an entry remembers the key ring's removal generation read
//!   *before* its verification. A hit whose kid no longer verifies, or
//!   whose generation is stale (a key was removed, pruned or replaced
//!   since), is a miss and the entry is dropped: a removed key's tokens
//!   are refused at their next request.
//! - **Bounded**: at most `[tokens] verified_cache_entries` entries, each
//!   the claims of one token (at most `MAX_TOKEN_LEN` bytes of input).
//! - **What it does not replace**: revocation, the binding proof and the
//!   replay check run after it on every request, exactly as without it.
//!
//! Only session tokens are cached (the manager caches what
//! `verify_at(…, TokenType::Session, …)` accepted); refresh tokens are
//! spent once and always fully verified.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::sync::Cache;
use ring::digest::{SHA256, digest};

use crate::gateway::metrics::CacheLookups;
use crate::gateway::session_token::keyring::KeyRing;
use crate::gateway::session_token::{self, VerifiedClaims};

/// Verified session tokens by SHA-256 of their bytes. `Send + Sync`.
pub struct VerifiedCache {
    /// `None` when `[tokens] verified_cache_entries = 0`.
    entries: Option<Cache<TokenKey, Entry>>,
    /// The token policy's leeway, applied as `verify_at` applies it.
    leeway: Duration,
    lookups: CacheLookups,
}

/// SHA-256 of the token bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct TokenKey([u8; 32]);

impl TokenKey {
    fn of(token: &str) -> Self {
        let mut key = [0u8; 32];
        // SHA-256 output is always 32 bytes.
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(key)
    }
}

#[derive(Clone)]
struct Entry {
    /// Shared with every `Session` built from this entry.
    claims: Arc<VerifiedClaims>,
    /// The ring's removal generation read before the verification.
    generation: u64,
    /// From insertion to the token's `exp` + leeway.
    ttl: Duration,
}

struct UntilExpiry;

impl Expiry<TokenKey, Entry> for UntilExpiry {
    fn expire_after_create(&self, _: &TokenKey, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    // Entries are never updated in place (a re-insert after a stale hit
    // carries its own ttl); keep whichever is shorter to be safe.
    fn expire_after_update(
        &self,
        _: &TokenKey,
        entry: &Entry,
        _: Instant,
        left: Option<Duration>,
    ) -> Option<Duration> {
        Some(left.map_or(entry.ttl, |left| left.min(entry.ttl)))
    }
}

impl VerifiedCache {
    /// A cache of at most `max_entries` tokens (0: off) under `leeway`.
    /// Counts into unregistered counters until [`count_into`](Self::count_into).
    pub fn new(max_entries: u64, leeway: Duration) -> Self {
        let entries = (max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExpiry)
                .build()
        });
        Self {
            entries,
            leeway,
            lookups: CacheLookups::default(),
        }
    }

    /// Counts hits and misses into `lookups` (the registered metric).
    pub fn count_into(&mut self, lookups: CacheLookups) {
        self.lookups = lookups;
    }

    /// The hit and miss counters. With the cache off nothing is counted.
    pub fn lookups(&self) -> &CacheLookups {
        &self.lookups
    }

    /// Whether the cache is on (`verified_cache_entries > 0`).
    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The verified claims of `token` at `now`: from the cache when a
    /// valid entry vouched for by `ring` holds them, otherwise from
    /// `verify` (the full verification), whose success alone is cached.
    pub fn get_or_verify<E>(
        &self,
        token: &str,
        ring: &KeyRing,
        now: SystemTime,
        verify: impl FnOnce() -> Result<VerifiedClaims, E>,
    ) -> Result<Arc<VerifiedClaims>, E> {
        let Some(entries) = &self.entries else {
            return verify().map(Arc::new);
        };
        let key = TokenKey::of(token);
        if let Some(claims) = self.hit(entries, &key, ring, now) {
            self.lookups.hit();
            return Ok(claims);
        }
        self.lookups.miss();
        // Read before verifying: a key removed while `verify` runs leaves
        // this entry with a stale generation, never a current one.
        let generation = ring.generation();
        let claims = Arc::new(verify()?);
        // Only now, after full verification succeeded, does it go in.
        self.insert(entries, key, &claims, generation, now);
        Ok(claims)
    }

    fn hit(
        &self,
        entries: &Cache<TokenKey, Entry>,
        key: &TokenKey,
        ring: &KeyRing,
        now: SystemTime,
    ) -> Option<Arc<VerifiedClaims>> {
        let entry = entries.get(key)?;
        // The key that vouched must still be in the ring with no removal
        // since, and the token still in its time window at `now`.
        let vouched = ring.still_vouches(entry.claims.kid(), entry.generation);
        if vouched && session_token::times_valid_at(entry.claims.claims(), self.leeway, now) {
            return Some(entry.claims);
        }
        entries.invalidate(key);
        None
    }

    fn insert(
        &self,
        entries: &Cache<TokenKey, Entry>,
        key: TokenKey,
        claims: &Arc<VerifiedClaims>,
        generation: u64,
        now: SystemTime,
    ) {
        let Some(end) = claims.exp().checked_add(self.leeway) else {
            return;
        };
        // Verification just passed at `now`, so this is positive; a token
        // at the edge is simply not cached.
        let Ok(ttl) = end.duration_since(now) else {
            return;
        };
        if ttl.is_zero() {
            return;
        }
        entries.insert(
            key,
            Entry {
                claims: Arc::clone(claims),
                generation,
                ttl,
            },
        );
    }

    /// Whether `token` has an entry (valid or not yet dropped). Counts
    /// nothing; for tests and diagnostics.
    pub fn contains(&self, token: &str) -> bool {
        self.entries
            .as_ref()
            .is_some_and(|e| e.contains_key(&TokenKey::of(token)))
    }

    /// Entries held now (pending evictions and expiries applied first).
    pub fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |e| {
            e.run_pending_tasks();
            e.entry_count()
        })
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
