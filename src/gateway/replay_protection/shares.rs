//! Per-session and per-subject shares of the nonce capacity.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::ReplayError;

/// Live nonce counts per owner, against two caps. One lock, held only for
/// a few hash-map operations per protected request (never across a moka
/// call: moka's eviction listener takes it too).
pub(super) struct Shares {
    per_session: u64,
    per_subject: u64,
    counts: Mutex<HashMap<OwnerKey, u64>>,
}

/// What one nonce entry is charged to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owners {
    session: OwnerKey,
    subject: Option<OwnerKey>,
}

impl Owners {
    pub(super) fn of(session_id: &str, subject: Option<&str>) -> Self {
        Self {
            session: owner_key(b"sid", session_id),
            subject: subject.map(|s| owner_key(b"sub", s)),
        }
    }
}

impl Shares {
    pub(super) fn new(per_session: u64, per_subject: u64) -> Self {
        Self {
            per_session,
            per_subject,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one unit of each owner's share and then, through `global`, one
    /// slot of the global capacity; takes nothing when either refuses.
    pub(super) fn take(
        &self,
        owners: &Owners,
        global: impl FnOnce() -> bool,
    ) -> Result<(), ReplayError> {
        let mut counts = self.lock();
        let count = |key: &OwnerKey| counts.get(key).copied().unwrap_or(0);
        // A session past its share (or a subject past its own, e.g. through
        // many logins) is refused before the global cap is touched, so one
        // owner can never take the capacity others need.
        let over_subject = owners
            .subject
            .is_some_and(|s| count(&s) >= self.per_subject);
        if count(&owners.session) >= self.per_session || over_subject {
            return Err(ReplayError::QuotaExhausted);
        }
        if !global() {
            return Err(ReplayError::CapacityExhausted);
        }
        for key in owners.keys() {
            *counts.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Gives back what [`take`](Self::take) took for `owners`.
    pub(super) fn release(&self, owners: &Owners) {
        let mut counts = self.lock();
        for key in owners.keys() {
            if let Some(n) = counts.get_mut(&key) {
                *n = n.saturating_sub(1);
                // Owners with nothing live leave the map: its size is
                // bounded by the live entries, never by past sessions.
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<OwnerKey, u64>> {
        // Every update leaves the map consistent; poisoning is harmless.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Owners {
    fn keys(&self) -> impl Iterator<Item = OwnerKey> {
        std::iter::once(self.session).chain(self.subject)
    }
}

impl std::fmt::Debug for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shares")
            .field("per_session", &self.per_session)
            .field("per_subject", &self.per_subject)
            .field("owners", &self.lock().len())
            .finish()
    }
}

/// 64 bits of SHA-256 over a kind tag and the id. A collision between two
/// owners (≈ n²/2⁶⁵) only makes them share one count: stricter, never a
/// replay let through.
type OwnerKey = u64;

fn owner_key(kind: &[u8], id: &str) -> OwnerKey {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(kind);
    ctx.update(id.as_bytes());
    let digest = ctx.finish();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(bytes)
}
