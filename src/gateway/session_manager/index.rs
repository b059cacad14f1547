//! The per-subject index of live sessions, for the per-user limit and the
//! session listing.
//!
//! In memory, and (in a gateway, via [`SessionIndex::attach`]) mirrored to
//! `sessions.jsonl` in the state directory, so after a restart the limit
//! still counts the sessions from before it (issue 11). Every change of a
//! subject's list and its journal line are made under one lock, so the
//! file's order is the memory's order. Without a journal (library use,
//! tests) a restart starts the index empty: tokens stay valid or revoked
//! exactly as before, but older sessions are neither listed nor counted
//! until they refresh.

mod journal;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::ops::compute::Op;
use moka::sync::Cache;

use super::random_id::RandomId;
use crate::gateway::session_token::Claims;

pub(super) use journal::{IndexJournal, JOURNAL_FILE};

/// One session as the index knows it: 80 bytes inline, no heap block
/// (binary ids, times in Unix seconds as tokens carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LiveSession {
    /// Session id.
    pub(super) sid: RandomId,
    /// `jti` of its latest session token.
    pub(super) jti: RandomId,
    /// `auth_time`: when the session started (Unix seconds).
    created: u64,
    /// When it ends unless refreshed (Unix seconds).
    expires: u64,
}

impl LiveSession {
    /// A session; times are kept to the whole second.
    pub(super) fn new(
        sid: RandomId,
        jti: RandomId,
        created: SystemTime,
        expires: SystemTime,
    ) -> Self {
        Self {
            sid,
            jti,
            created: unix(created),
            expires: unix(expires),
        }
    }

    /// The session of freshly minted session-token claims, live until
    /// `expires`. `None` if an id is not a canonical 256-bit id, which
    /// minting and verification never let through.
    pub(super) fn minted(claims: &Claims, expires: SystemTime) -> Option<Self> {
        Some(Self::new(
            RandomId::parse(&claims.sid)?,
            RandomId::parse(&claims.jti)?,
            claims.auth_time,
            expires,
        ))
    }

    /// When the session started.
    pub(super) fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.created)
    }

    /// When it ends unless refreshed.
    pub(super) fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires)
    }

    fn live_at(&self, now: SystemTime) -> bool {
        self.expires > unix(now)
    }
}

/// Live sessions by subject. Each subject's list is replaced atomically
/// (moka's per-key compute), so concurrent logins of one user are counted
/// one by one.
///
/// A list is stored as an exact-size `Arc<[LiveSession]>` (no spare
/// capacity) and replaced whole on a change.
pub(super) struct SessionIndex {
    by_subject: Cache<String, Arc<[LiveSession]>>,
    /// Where changes are mirrored; `None`: memory only.
    journal: Option<Mutex<IndexJournal>>,
}

impl SessionIndex {
    /// An index whose idle subjects are dropped after `forget_after`: no
    /// session outlives its absolute limit, so a subject untouched for that
    /// long has none left. No size bound: subjects are the configured users
    /// plus `owner`, and each list is bounded by the session limit.
    pub(super) fn new(forget_after: Duration) -> Self {
        Self {
            by_subject: Cache::builder()
                .time_to_idle(forget_after.min(MAX_FORGET_AFTER))
                .build(),
            journal: None,
        }
    }

    /// Restores a subject's sessions loaded from the journal (before
    /// [`attach`](Self::attach); not written back).
    pub(super) fn restore(&self, sub: &str, sessions: Vec<LiveSession>, now: SystemTime) {
        let list: Arc<[LiveSession]> = sessions.into_iter().filter(|s| s.live_at(now)).collect();
        if !list.is_empty() {
            self.by_subject.insert(sub.to_owned(), list);
        }
    }

    /// Mirrors every change from now on to `journal`, after compacting it
    /// to the current contents.
    pub(super) fn attach(&mut self, mut journal: IndexJournal) {
        journal.compact(&self.snapshot());
        self.journal = Some(Mutex::new(journal));
    }

    /// The journal's write problem, if any (for health and logs).
    pub(super) fn journal_issue(&self) -> Option<String> {
        self.journal
            .as_ref()
            .and_then(|j| lock(j).issue().map(str::to_owned))
    }

    /// Adds a new session of `sub` and returns the sessions it evicts: the
    /// oldest ones, so that at most `max` remain.
    pub(super) fn add(
        &self,
        sub: &str,
        session: LiveSession,
        max: usize,
        now: SystemTime,
    ) -> Vec<LiveSession> {
        self.update(sub, now, |list| {
            let mut evicted = Vec::new();
            while !list.is_empty() && list.len() >= max {
                // Oldest by start time; among equals the first added.
                let oldest = list
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.created)
                    .map_or(0, |(i, _)| i);
                evicted.push(list.remove(oldest));
            }
            list.push(session);
            evicted
        })
    }

    /// Records a refresh: the session's latest `jti` and expiry. A session
    /// the index does not know (no journal, or one that was lost) is added
    /// back.
    pub(super) fn refreshed(&self, sub: &str, session: LiveSession, now: SystemTime) {
        self.update(sub, now, |list| {
            match list.iter_mut().find(|s| s.sid == session.sid) {
                Some(known) => {
                    known.jti = session.jti;
                    known.expires = session.expires;
                }
                None => list.push(session),
            }
        });
    }

    /// Forgets session `sid` of `sub`.
    pub(super) fn remove(&self, sub: &str, sid: RandomId) {
        if self.by_subject.contains_key(sub) {
            self.update(sub, UNIX_EPOCH, |list| {
                list.retain(|s| s.sid != sid);
            });
        }
    }

    /// Forgets session `sid` whoever it belongs to (admin revocation by
    /// `sid`, which does not say the subject).
    pub(super) fn remove_everywhere(&self, sid: RandomId) {
        let owners: Vec<Arc<String>> = self
            .by_subject
            .iter()
            .filter(|(_, list)| list.iter().any(|s| s.sid == sid))
            .map(|(sub, _)| sub)
            .collect();
        for sub in owners {
            self.remove(&sub, sid);
        }
    }

    /// Forgets every session of `sub`.
    pub(super) fn remove_subject(&self, sub: &str) {
        if self.by_subject.contains_key(sub) {
            self.update(sub, UNIX_EPOCH, Vec::clear);
        }
    }

    /// The live sessions of `sub` at `now`, oldest first.
    pub(super) fn live_sessions(&self, sub: &str, now: SystemTime) -> Vec<LiveSession> {
        let mut list = live(self.by_subject.get(sub), now);
        list.sort_by_key(|s| s.created);
        list
    }

    /// Applies `change` to `sub`'s list (sessions expired at `now`
    /// dropped first) and writes the result to the journal, both under the
    /// journal lock: two changes reach the file in the order they reached
    /// memory, so the file's last line per subject is the memory's state.
    fn update<R: Default>(
        &self,
        sub: &str,
        now: SystemTime,
        change: impl FnOnce(&mut Vec<LiveSession>) -> R,
    ) -> R {
        let mut journal = self.journal.as_ref().map(lock);
        let mut out = None;
        let mut written = Vec::new();
        self.by_subject.entry_by_ref(sub).and_compute_with(|old| {
            let mut list = live(old.map(|e| e.into_value()), now);
            out = Some(change(&mut list));
            written.clone_from(&list);
            if list.is_empty() {
                Op::Remove
            } else {
                Op::Put(Arc::from(list))
            }
        });
        if let Some(journal) = journal.as_mut() {
            journal.record(sub, &written);
            let live_subjects = || {
                self.by_subject.run_pending_tasks();
                self.by_subject.entry_count()
            };
            if journal.wants_compaction(live_subjects) {
                journal.compact(&self.snapshot());
            }
        }
        // `and_compute_with` runs the closure exactly once, so this is
        // always `Some`.
        out.unwrap_or_default()
    }

    /// Every subject's list.
    fn snapshot(&self) -> Vec<(String, Vec<LiveSession>)> {
        self.by_subject
            .iter()
            .map(|(sub, list)| ((*sub).clone(), list.to_vec()))
            .collect()
    }
}

/// The unexpired sessions of a stored list (wall clock: moka's own clock
/// does not follow an injected one).
fn live(list: Option<Arc<[LiveSession]>>, now: SystemTime) -> Vec<LiveSession> {
    list.map(|l| l.iter().filter(|s| s.live_at(now)).copied().collect())
        .unwrap_or_default()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Locks, recovering from poisoning: a panic between a memory change and
/// its journal line at worst leaves one line missing (an undercount after a
/// restart), never a corrupt file.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Cap on the idle lifetime of a subject's list (moka refuses more than
/// 1,000 years); 101 years is past the longest absolute limit allowed.
const MAX_FORGET_AFTER: Duration = Duration::from_secs(101 * 365 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A test id: 32 copies of `c`'s byte ('a' → 0x61…).
    fn id(c: char) -> RandomId {
        RandomId::from_bytes([c as u8; 32])
    }

    fn session(sid: char, created: u64, expires: u64) -> LiveSession {
        LiveSession::new(
            id(sid),
            id(sid.to_ascii_uppercase()),
            at(created),
            at(expires),
        )
    }

    #[test]
    fn a_live_session_is_80_bytes_inline() {
        assert_eq!(size_of::<LiveSession>(), 80);
    }

    #[test]
    fn add_beyond_the_limit_evicts_the_oldest_first() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        for (i, sid) in ['a', 'b', 'c'].into_iter().enumerate() {
            let evicted = index.add("alice", session(sid, 10 + i as u64, 1_000), 3, at(20));
            assert!(evicted.is_empty());
        }
        let evicted = index.add("alice", session('d', 5, 1_000), 3, at(20));
        assert_eq!(evicted, vec![session('a', 10, 1_000)]);
        let sids: Vec<RandomId> = index
            .live_sessions("alice", at(20))
            .into_iter()
            .map(|s| s.sid)
            .collect();
        assert_eq!(sids, [id('d'), id('b'), id('c')]);
    }

    #[test]
    fn expired_sessions_neither_count_nor_list() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        index.add("alice", session('o', 1, 50), 1, at(10));
        let evicted = index.add("alice", session('n', 60, 1_000), 1, at(60));
        assert!(evicted.is_empty(), "an expired session is not evicted");
        assert_eq!(index.live_sessions("alice", at(60)).len(), 1);
        // Expiry is exclusive: at its `expires` second a session is over.
        assert!(index.live_sessions("alice", at(1_000)).is_empty());
        assert_eq!(index.live_sessions("alice", at(999)).len(), 1);
    }

    #[test]
    fn refreshed_updates_the_jti_and_expiry_in_place() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        index.add("alice", session('a', 1, 100), 5, at(2));
        let newer = LiveSession::new(id('a'), id('z'), at(1), at(500));
        index.refreshed("alice", newer, at(3));
        assert_eq!(index.live_sessions("alice", at(200)), vec![newer]);
        assert_eq!(newer.created(), at(1));
        assert_eq!(newer.expires(), at(500));
    }

    #[test]
    fn remove_everywhere_finds_the_owner() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        index.add("alice", session('a', 1, 1_000), 5, at(2));
        index.add("bob", session('b', 1, 1_000), 5, at(2));
        index.remove_everywhere(id('b'));
        assert!(index.live_sessions("bob", at(2)).is_empty());
        assert_eq!(index.live_sessions("alice", at(2)).len(), 1);
    }
}
