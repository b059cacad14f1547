//! The per-subject index of live sessions, for the per-user limit and the
//! session listing.
//!
//! In memory only: after a restart it starts empty. Tokens stay exactly as
//! valid or revoked as before (that is the signature and the durable
//! revocation store); what is lost is the list of older sessions, so they
//! are neither listed nor counted (nor evicted) until they refresh, which
//! puts them back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::ops::compute::Op;
use moka::sync::Cache;

/// One session as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LiveSession {
    /// Session id.
    pub(super) sid: String,
    /// `jti` of its latest session token.
    pub(super) jti: String,
    /// `auth_time`: when the session started.
    pub(super) created: SystemTime,
    /// When it ends unless refreshed.
    pub(super) expires: SystemTime,
}

/// Live sessions by subject. Each subject's list is replaced atomically
/// (moka's per-key compute), so concurrent logins of one user are counted
/// one by one.
pub(super) struct SessionIndex {
    by_subject: Cache<String, Arc<Vec<LiveSession>>>,
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
        }
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
        let mut evicted = Vec::new();
        self.by_subject.entry_by_ref(sub).and_compute_with(|old| {
            let mut list = live(old.map(|e| e.into_value()), now);
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
            Op::Put(Arc::new(list))
        });
        evicted
    }

    /// Records a refresh: the session's latest `jti` and expiry. A session
    /// the index does not know (after a restart) is added back.
    pub(super) fn refreshed(&self, sub: &str, session: LiveSession, now: SystemTime) {
        self.by_subject.entry_by_ref(sub).and_compute_with(|old| {
            let mut list = live(old.map(|e| e.into_value()), now);
            match list.iter_mut().find(|s| s.sid == session.sid) {
                Some(known) => {
                    known.jti = session.jti;
                    known.expires = session.expires;
                }
                None => list.push(session),
            }
            Op::Put(Arc::new(list))
        });
    }

    /// Forgets session `sid` of `sub`.
    pub(super) fn remove(&self, sub: &str, sid: &str) {
        self.by_subject.entry_by_ref(sub).and_compute_with(|old| {
            let Some(old) = old else { return Op::Nop };
            let mut list = (*old.into_value()).clone();
            list.retain(|s| s.sid != sid);
            if list.is_empty() {
                Op::Remove
            } else {
                Op::Put(Arc::new(list))
            }
        });
    }

    /// Forgets session `sid` whoever it belongs to (admin revocation by
    /// `sid`, which does not say the subject).
    pub(super) fn remove_everywhere(&self, sid: &str) {
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
        self.by_subject.invalidate(sub);
    }

    /// The live sessions of `sub` at `now`, oldest first.
    pub(super) fn live_sessions(&self, sub: &str, now: SystemTime) -> Vec<LiveSession> {
        let mut list = live(self.by_subject.get(sub), now);
        list.sort_by_key(|s| s.created);
        list
    }
}

/// The unexpired sessions of a stored list (wall clock: moka's own clock
/// does not follow an injected one).
fn live(list: Option<Arc<Vec<LiveSession>>>, now: SystemTime) -> Vec<LiveSession> {
    list.map(|l| l.iter().filter(|s| s.expires > now).cloned().collect())
        .unwrap_or_default()
}

/// Cap on the idle lifetime of a subject's list (moka refuses more than
/// 1,000 years); 101 years is past the longest absolute limit allowed.
const MAX_FORGET_AFTER: Duration = Duration::from_secs(101 * 365 * 86_400);

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn session(sid: &str, created: u64, expires: u64) -> LiveSession {
        LiveSession {
            sid: sid.to_owned(),
            jti: format!("jti-{sid}"),
            created: at(created),
            expires: at(expires),
        }
    }

    #[test]
    fn add_beyond_the_limit_evicts_the_oldest_first() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        for (i, sid) in ["a", "b", "c"].iter().enumerate() {
            let evicted = index.add("alice", session(sid, 10 + i as u64, 1_000), 3, at(20));
            assert!(evicted.is_empty());
        }
        let evicted = index.add("alice", session("d", 5, 1_000), 3, at(20));
        assert_eq!(evicted, vec![session("a", 10, 1_000)]);
        let sids: Vec<String> = index
            .live_sessions("alice", at(20))
            .into_iter()
            .map(|s| s.sid)
            .collect();
        assert_eq!(sids, ["d", "b", "c"]);
    }

    #[test]
    fn expired_sessions_neither_count_nor_list() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        index.add("alice", session("old", 1, 50), 1, at(10));
        let evicted = index.add("alice", session("new", 60, 1_000), 1, at(60));
        assert!(evicted.is_empty(), "an expired session is not evicted");
        assert_eq!(index.live_sessions("alice", at(60)).len(), 1);
    }

    #[test]
    fn remove_everywhere_finds_the_owner() {
        let index = SessionIndex::new(Duration::from_secs(3_600));
        index.add("alice", session("a", 1, 1_000), 5, at(2));
        index.add("bob", session("b", 1, 1_000), 5, at(2));
        index.remove_everywhere("b");
        assert!(index.live_sessions("bob", at(2)).is_empty());
        assert_eq!(index.live_sessions("alice", at(2)).len(), 1);
    }
}
