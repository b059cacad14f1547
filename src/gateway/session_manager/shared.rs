//! Cluster mode (`[cluster] mode = "redis"`): the per-user session limit
//! and the session listing across replicas, on the fleet's index
//! ([`SharedIndex`]).
//!
//! A new session is admitted by `session_add.lua`, which evicts the
//! subject's oldest sessions atomically for the whole fleet; the evicted
//! ones are revoked here through the normal local path (memory, journal,
//! and from there to the other replicas), so they are refused everywhere.
//! The local index is kept as well, as the fallback listing, without
//! evicting on its own: only the fleet decides.
//!
//! Standalone (no cluster), every function here is the local path.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::index::LiveSession;
use super::issue::NewSession;
use super::random_id::RandomId;
use super::types::sid_prefix;
use super::{Session, SessionError, SessionManager, SessionSummary, TokenPair, floor_secs, unix};
use crate::gateway::cluster::sessions::{OP_ADD, SharedIndex, SharedSession};

/// `GET /auth/sessions` in cluster mode.
#[derive(Debug, Clone)]
pub struct SharedListing {
    /// The subject's live sessions, oldest first.
    pub sessions: Vec<SessionSummary>,
    /// `true` when Redis could not answer and the list is this replica's
    /// own (sessions started on other replicas may be missing).
    pub partial: bool,
}

impl SessionManager {
    /// The fleet's session index, in cluster mode.
    fn shared_index(&self) -> Option<SharedIndex> {
        self.cluster
            .as_ref()
            .map(|c| SharedIndex::new(Arc::clone(c)))
    }

    /// Admits a minted session and hands out its pair. Standalone: the
    /// local index (evicting beyond the limit), as always. Cluster mode:
    /// `session_add.lua` counts it against the fleet's limit first; if
    /// Redis cannot answer within `command_timeout` nothing is handed out
    /// and [`SessionError::SessionStoreUnavailable`] (503) is returned
    /// (fail closed: a session the fleet did not count could exceed the
    /// limit).
    pub async fn admit(self: &Arc<Self>, new: NewSession) -> Result<TokenPair, SessionError> {
        let Some(index) = self.shared_index() else {
            return Ok(self.admit_local(new));
        };
        let claims = new.pair.session_claims();
        // Minted ids are always canonical 256-bit ids, so this is `Some`.
        let Some(live) = LiveSession::minted(claims, new.pair.live_until()) else {
            return Err(SessionError::SessionStoreUnavailable);
        };
        let sub = claims.sub.clone();
        let entry = SharedSession {
            sid: claims.sid.clone(),
            // Millisecond start: concurrent logins of one second still
            // have an order, the same on every replica (ties: by sid).
            created_ms: crate::clock::unix_millis(self.clock.now()),
            expires_ms: unix(live.expires()).saturating_mul(1_000),
            jti: claims.jti.clone(),
        };
        let keep = self.shared_keep();
        let max = self.limits.max_sessions;
        match index.add(&sub, &entry, max, entry.created_ms, keep).await {
            Ok(evicted) => {
                let this = Arc::clone(self);
                // Revocations fsync the journal: off the async workers.
                let done =
                    tokio::task::spawn_blocking(move || this.admitted_shared(new, live, &evicted))
                        .await;
                match done {
                    Ok(pair) => Ok(pair),
                    Err(_) => {
                        forget_later(index, sub, entry.sid);
                        Err(SessionError::SessionStoreUnavailable)
                    }
                }
            }
            Err(error) => {
                index.cluster().metrics().unavailable(OP_ADD);
                tracing::warn!(
                    event = "session_store_unavailable",
                    kind = error.kind(),
                    sid_prefix = sid_prefix(&entry.sid),
                    "the fleet's session index did not answer; the session was not issued"
                );
                // A timed-out script may still run later: take the entry
                // back out once Redis answers, so a session nobody holds
                // does not count against the limit.
                forget_later(index, sub, entry.sid);
                Err(SessionError::SessionStoreUnavailable)
            }
        }
    }

    /// After `session_add.lua`: revoke what the fleet evicted (normal
    /// path: memory, journal, then the other replicas), mirror into the
    /// local index, log, hand out the pair.
    fn admitted_shared(
        &self,
        new: NewSession,
        live: LiveSession,
        evicted: &[SharedSession],
    ) -> TokenPair {
        let NewSession {
            pair,
            method,
            client,
            now,
        } = new;
        let claims = pair.session_claims();
        for old in evicted {
            // The same eviction as standalone's. Every entry was minted by
            // a replica, so its ids are canonical; anything else in the
            // hash is no session of ours and has nothing to revoke.
            let (Some(sid), Some(jti)) = (RandomId::parse(&old.sid), RandomId::parse(&old.jti))
            else {
                continue;
            };
            let created = UNIX_EPOCH + Duration::from_millis(old.created_ms);
            let expires = UNIX_EPOCH + Duration::from_millis(old.expires_ms);
            self.index.remove(&claims.sub, sid);
            self.evict(
                &claims.sub,
                &LiveSession::new(sid, jti, created, expires),
                now,
            );
        }
        // The local copy is a listing fallback: it may drop its own oldest
        // entries to stay bounded, but never revokes them (the fleet does).
        let _forgotten = self
            .index
            .add(&claims.sub, live, self.limits.max_sessions, now);
        super::issue::log_issued(claims, method, client);
        pair
    }

    /// This subject's live sessions. Cluster mode: the fleet's index
    /// (the same list on every replica), minus what this replica knows to
    /// be revoked or expired; the local index, marked partial, when Redis
    /// cannot answer. Standalone: [`list`](Self::list).
    pub async fn list_shared(&self, session: &Session) -> SharedListing {
        let Some(index) = self.shared_index() else {
            return SharedListing {
                sessions: self.list(session),
                partial: false,
            };
        };
        let now = self.clock.now();
        let Ok(entries) = index.list(session.subject()).await else {
            return SharedListing {
                sessions: self.list(session),
                partial: true,
            };
        };
        let now_ms = crate::clock::unix_millis(now);
        let now_s = unix(floor_secs(now));
        let sub = session.subject();
        let mut live: Vec<SessionSummary> = entries
            .into_iter()
            .filter(|e| e.expires_ms > now_ms)
            .filter(|e| {
                !self
                    .store
                    .is_revoked_at("", &e.sid, sub, e.created_ms / 1_000, now_s)
            })
            .map(|e| SessionSummary {
                current: e.sid == session.session_id(),
                created_at: UNIX_EPOCH + Duration::from_secs(e.created_ms / 1_000),
                expires_at: UNIX_EPOCH + Duration::from_secs(e.expires_ms / 1_000),
                sid: e.sid,
            })
            .collect();
        // The asking session is certainly live, even if the fleet's index
        // does not hold it (issued offline by the CLI).
        if !live.iter().any(|s| s.current) {
            live.extend(self.list(session).into_iter().filter(|s| s.current));
        }
        live.sort_by(|a, b| (a.created_at, &a.sid).cmp(&(b.created_at, &b.sid)));
        SharedListing {
            sessions: live,
            partial: false,
        }
    }

    /// A refresh of session `live` of `sub`: updates the fleet's entry in
    /// the background (a refresh does not wait on it; an entry the fleet
    /// lost is added back, never evicting).
    pub(super) fn touch_shared(&self, sub: &str, live: &LiveSession) {
        let Some(index) = self.shared_index() else {
            return;
        };
        let entry = SharedSession {
            sid: live.sid.to_string(),
            created_ms: unix(live.created()).saturating_mul(1_000),
            expires_ms: unix(live.expires()).saturating_mul(1_000),
            jti: live.jti.to_string(),
        };
        let (sub, keep) = (sub.to_owned(), self.shared_keep());
        spawn(async move {
            if let Err(e) = index.touch(&sub, &entry, keep).await {
                tracing::debug!(
                    event = "session_touch_failed",
                    kind = e.kind(),
                    "the fleet's session index missed a refresh"
                );
            }
        });
    }

    /// Forgets session `sid` (of `sub`, when known) in the fleet's index,
    /// in the background: revocation itself never waits on Redis.
    pub(super) fn forget_shared(&self, sub: Option<&str>, sid: &str) {
        let Some(index) = self.shared_index() else {
            return;
        };
        match sub {
            Some(sub) => forget_later(index, sub.to_owned(), sid.to_owned()),
            None => {
                let sid = sid.to_owned();
                spawn(async move {
                    let _ = index.remove_sid(&sid).await;
                });
            }
        }
    }

    /// Forgets every session of `sub` in the fleet's index (background).
    pub(super) fn forget_subject_shared(&self, sub: &str) {
        let Some(index) = self.shared_index() else {
            return;
        };
        let sub = sub.to_owned();
        spawn(async move {
            let _ = index.remove_subject(&sub).await;
        });
    }

    /// How long a subject's hash outlives its newest write: no session
    /// lasts past its absolute limit (plus leeway).
    fn shared_keep(&self) -> Duration {
        self.limits
            .absolute_timeout
            .saturating_add(self.limits.leeway)
    }
}

/// Removes `sid` of `sub` from the fleet's index, retrying for about a
/// minute while Redis does not answer.
fn forget_later(index: SharedIndex, sub: String, sid: String) {
    spawn(async move {
        let mut wait = Duration::from_millis(250);
        for _ in 0..10 {
            if index.remove(&sub, &sid).await.is_ok() {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        tracing::warn!(
            event = "session_index_cleanup_failed",
            sid_prefix = sid_prefix(&sid),
            "could not remove a session from the fleet's index; it expires on its own"
        );
    });
}

/// Spawns on the current runtime; without one (library use outside tokio)
/// the fleet's index is simply not updated.
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}
