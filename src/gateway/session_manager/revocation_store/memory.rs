//! The in-memory revocation set.
//!
//! ## Layout
//!
//! - `jti` and `sid` revocations whose id is a canonical 256-bit id (every
//!   id the gateway mints) live in [`Sharded`] sets: 4,096 moka entries per
//!   kind, keyed by 12 bits of the id, each holding a sorted slice of
//!   `(id, until)` pairs (40 bytes each, no heap block per id).
//! - Any other `jti`/`sid` text (an administrator's free-form id) and every
//!   `sub` revocation stay one moka entry per id, keyed by the string.
//!
//! A query id that parses can only equal a revoked id that parsed (the text
//! ↔ bytes map is a bijection on canonical text, see `RandomId`), and one
//! that does not parse only a string-keyed one: each lookup reads exactly
//! one place per kind.
//!
//! ## Memory (PITFALLS R4 forbids a size bound, so it is stated here)
//!
//! One moka entry costs ≈ 330 bytes of bookkeeping by itself (the Arc'd
//! entry, key hash, access-order deque and timer-wheel nodes, hash-table
//! slot), so one entry per revoked id (≈ 460 bytes with a `String` key)
//! cannot hold 100,000 revocations in a few MB. Sharded, the moka part is
//! fixed (≤ 4,096 entries per kind, ≈ 1.4 MB when all are in use) and each
//! revocation adds its 40-byte pair: 100,000 `jti` revocations measured
//! ≈ 7 MiB in all, filters included (`examples/session_memory`, figures in
//! `docs/performance.md`). Entries still leave only at `until`.
//!
//! ## Expiry
//!
//! A shard's moka lifetime is that of its longest-lived pair, so moka drops
//! a shard once everything in it is over. Pairs that are over (`until` +
//! [`WALL_CLOCK_SLACK`] past) are dropped when their shard is next written;
//! lookups compare `until` with the wall clock, so a pair kept longer than
//! needed never changes an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::Revocation;
use crate::gateway::session_manager::random_id::RandomId;

pub(super) struct MemorySet {
    tokens: Sharded,
    sessions: Sharded,
    /// `jti` revocations whose id is not a canonical 256-bit id.
    other_tokens: Cache<String, Cut>,
    /// `sid` revocations whose id is not a canonical 256-bit id.
    other_sessions: Cache<String, Cut>,
    subjects: Cache<String, Cut>,
}

impl MemorySet {
    pub(super) fn new() -> Self {
        Self {
            tokens: Sharded::new(),
            sessions: Sharded::new(),
            other_tokens: build(),
            other_sessions: build(),
            subjects: build(),
        }
    }

    /// Adds (or widens) a revocation; atomic per id. Returns whether the
    /// set changed (the id was new, or its `until` or `issued_before`
    /// widened): the cluster mirror journals and broadcasts only those.
    pub(super) fn insert(&self, revocation: &Revocation, now: u64) -> bool {
        let (sharded, others) = match revocation {
            Revocation::Token { .. } => (&self.tokens, &self.other_tokens),
            Revocation::Session { .. } => (&self.sessions, &self.other_sessions),
            Revocation::Subject { .. } => return insert_cut(&self.subjects, revocation, now),
        };
        match RandomId::parse(revocation.id()) {
            Some(id) => sharded.insert(id, revocation.until(), now),
            None => insert_cut(others, revocation, now),
        }
    }

    pub(super) fn is_revoked_at(
        &self,
        jti: &str,
        sid: &str,
        sub: &str,
        iat: u64,
        now: u64,
    ) -> bool {
        let by_id =
            |sharded: &Sharded, others: &Cache<String, Cut>, id: &str| match RandomId::parse(id) {
                Some(id) => sharded.covers(&id, now),
                None => covered(others, id, iat, now),
            };
        by_id(&self.tokens, &self.other_tokens, jti)
            || by_id(&self.sessions, &self.other_sessions, sid)
            || covered(&self.subjects, sub, iat, now)
    }

    /// Revoked ids held (pairs in shards plus string-keyed entries; moka's
    /// counts lag until its housekeeping runs).
    pub(super) fn len(&self) -> u64 {
        self.tokens.len()
            + self.sessions.len()
            + self.other_tokens.entry_count()
            + self.other_sessions.entry_count()
            + self.subjects.entry_count()
    }

    pub(super) fn run_pending_tasks(&self) {
        self.tokens.shards.run_pending_tasks();
        self.sessions.shards.run_pending_tasks();
        self.other_tokens.run_pending_tasks();
        self.other_sessions.run_pending_tasks();
        self.subjects.run_pending_tasks();
    }
}

/// Revocations of canonical ids, in [`SHARDS`] moka entries, behind a
/// presence filter.
struct Sharded {
    shards: Cache<u16, Arc<Shard>>,
    /// One bit per [`FILTER_BITS`] slot of ids, set before an id's pair is
    /// written and never cleared: a clear bit proves the id was never
    /// revoked, so a lookup of an unrevoked id (nearly every request)
    /// usually skips moka. A set bit only means "look in the shard".
    filter: Box<[AtomicU64]>,
}

/// One shard: pairs sorted by id, unique ids.
struct Shard {
    pairs: Box<[(RandomId, u64)]>,
    /// Moka lifetime from the write that made this shard: that of its
    /// longest-lived pair.
    ttl: Duration,
}

impl Sharded {
    fn new() -> Self {
        Self {
            // No max_capacity: a size-evicted shard would re-admit revoked
            // tokens (R4). At most SHARDS entries; each leaves when all its
            // pairs are over.
            shards: Cache::builder().expire_after(ShardExpiry).build(),
            filter: (0..FILTER_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The filter word and bit of an id: a multiplicative mix of two of
    /// its words (uniform for random ids, and spread for structured ones,
    /// such as a bench's), independent of the shard bits.
    fn filter_slot(&self, id: &RandomId) -> (&AtomicU64, u64) {
        let b = id.as_bytes();
        let word = |i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let mixed = (word(8) ^ word(24).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = (mixed >> (64 - FILTER_SLOT_BITS)) as usize;
        // `slot / 64 < FILTER_BITS / 64 == filter.len()`.
        (&self.filter[slot / 64], 1 << (slot % 64))
    }

    /// Revokes `id` through `until` (the later `until` if already revoked);
    /// atomic per shard (moka's per-key compute), so concurrent revocations
    /// in one shard are all kept.
    fn insert(&self, id: RandomId, until: u64, now: u64) -> bool {
        // The bit first (Release), then the pair: a lookup that sees the
        // bit clear (Acquire) ran before this revocation began.
        let (word, bit) = self.filter_slot(&id);
        word.fetch_or(bit, Ordering::Release);
        let mut changed = false;
        self.shards.entry(shard_of(&id)).and_upsert_with(|old| {
            let old = old.map(|e| e.into_value());
            let kept = old.as_deref().map_or(&[][..], |s| &s.pairs[..]);
            // Drop pairs that are over; keep WALL_CLOCK_SLACK like moka
            // does, so a wall clock stepped back cannot revive them.
            let mut pairs: Vec<(RandomId, u64)> = Vec::with_capacity(kept.len() + 1);
            pairs.extend(kept.iter().copied().filter(|&(_, u)| !is_over(u, now)));
            match pairs.binary_search_by(|(known, _)| known.cmp(&id)) {
                Ok(i) => {
                    changed = until > pairs[i].1;
                    pairs[i].1 = pairs[i].1.max(until);
                }
                Err(i) => {
                    changed = true;
                    pairs.insert(i, (id, until));
                }
            }
            let longest = pairs.iter().map(|&(_, u)| u).max().unwrap_or(until);
            Arc::new(Shard {
                pairs: pairs.into_boxed_slice(),
                ttl: ttl(longest, now),
            })
        });
        changed
    }

    /// Whether `id` is revoked at `now`.
    fn covers(&self, id: &RandomId, now: u64) -> bool {
        let (word, bit) = self.filter_slot(id);
        if word.load(Ordering::Acquire) & bit == 0 {
            return false;
        }
        // `until` is compared on the wall clock too: moka expires on its
        // own monotonic clock, which an injected clock (tests) does not move.
        self.shards.get(&shard_of(id)).is_some_and(|shard| {
            shard
                .pairs
                .binary_search_by(|(known, _)| known.cmp(id))
                .is_ok_and(|i| now <= shard.pairs[i].1)
        })
    }

    fn len(&self) -> u64 {
        self.shards.iter().map(|(_, s)| s.pairs.len() as u64).sum()
    }
}

/// The shard of an id: its first 12 bits (ids are uniformly random).
fn shard_of(id: &RandomId) -> u16 {
    let b = id.as_bytes();
    u16::from_be_bytes([b[0], b[1]]) >> (16 - SHARD_BITS)
}

/// Whether a revocation in force through `until` can be forgotten at `now`.
fn is_over(until: u64, now: u64) -> bool {
    until.saturating_add(WALL_CLOCK_SLACK.as_secs()) < now
}

struct ShardExpiry;

impl Expiry<u16, Arc<Shard>> for ShardExpiry {
    fn expire_after_create(&self, _: &u16, shard: &Arc<Shard>, _: Instant) -> Option<Duration> {
        Some(shard.ttl)
    }

    fn expire_after_update(
        &self,
        _: &u16,
        shard: &Arc<Shard>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(shard.ttl)
    }
}

/// What one string-keyed entry revokes.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Tokens with `iat` at or before this are revoked (`u64::MAX` for
    /// `jti`/`sid` entries: any `iat`).
    issued_before: u64,
    /// Last wall-clock second the entry matters.
    until: u64,
    /// Lifetime in moka's monotonic clock, from this write.
    ttl: Duration,
}

struct CutExpiry;

impl Expiry<String, Cut> for CutExpiry {
    fn expire_after_create(&self, _: &String, cut: &Cut, _: Instant) -> Option<Duration> {
        Some(cut.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        cut: &Cut,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(cut.ttl)
    }
}

fn build() -> Cache<String, Cut> {
    // No max_capacity: a size-evicted revocation would re-admit a revoked
    // token (R4). Memory is bounded by `until` instead.
    Cache::builder().expire_after(CutExpiry).build()
}

fn insert_cut(cache: &Cache<String, Cut>, revocation: &Revocation, now: u64) -> bool {
    let (issued_before, until) = (revocation.issued_before(), revocation.until());
    let mut changed = false;
    // Two revocations of one id merge to the wider one: a later
    // `issued_before` covers every token an earlier one covered.
    cache.entry_by_ref(revocation.id()).and_upsert_with(|old| {
        let (issued_before, until) = match old.map(|e| e.into_value()) {
            Some(o) => {
                changed = issued_before > o.issued_before || until > o.until;
                (o.issued_before.max(issued_before), o.until.max(until))
            }
            None => {
                changed = true;
                (issued_before, until)
            }
        };
        Cut {
            issued_before,
            until,
            ttl: ttl(until, now),
        }
    });
    changed
}

fn covered(cache: &Cache<String, Cut>, id: &str, iat: u64, now: u64) -> bool {
    cache
        .get(id)
        .is_some_and(|cut| now <= cut.until && iat <= cut.issued_before)
}

/// Moka lifetime for an entry in force through `until`.
fn ttl(until: u64, now: u64) -> Duration {
    let secs = until
        .saturating_sub(now)
        .saturating_add(1)
        .min(MAX_TTL_SECS);
    Duration::from_secs(secs) + WALL_CLOCK_SLACK
}

/// Slots of the presence filter (2^21 bits = 256 KiB per kind, fixed):
/// ≈ 5 % of unrevoked ids share a slot with one of 100,000 revoked ids and
/// take the moka path.
const FILTER_BITS: usize = 1 << FILTER_SLOT_BITS;
const FILTER_SLOT_BITS: u32 = 21;
/// Bits of an id that pick its shard.
const SHARD_BITS: u32 = 12;
/// Shards per kind: ≈ 24 pairs each at 100,000 revocations, so a write
/// copies ≈ 1 KB and a lookup binary-searches ≈ 5 steps.
#[cfg(test)]
const SHARDS: usize = 1 << SHARD_BITS;
/// Moka keeps an entry this much longer than the wall clock says it
/// matters, so a wall clock stepped back (NTP) by up to this much cannot
/// make moka forget a revocation whose token the wall clock still accepts;
/// the `until` comparison keeps the answer exact.
const WALL_CLOCK_SLACK: Duration = Duration::from_secs(300);
/// Cap on a moka lifetime (101 years): past the longest `[tokens]
/// absolute_timeout` allowed (100 years), so no revocation leaves memory
/// while a token it names can verify; far below moka's own cap (1,000
/// years) and `Instant` overflow.
const MAX_TTL_SECS: u64 = 101 * 365 * 86_400;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests;
