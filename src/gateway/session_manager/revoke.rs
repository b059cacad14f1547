//! Ending sessions: logout, revoking one's own sessions, admin revocation,
//! eviction by the per-user limit; the listing and `GET /auth/session`
//! views; and the future that resolves when a session ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::index::LiveSession;
use super::random_id::RandomId;
use super::types::sid_prefix;
use super::{
    ADMIN_SCOPE, AdminRevoke, Session, SessionError, SessionInfo, SessionManager, SessionSummary,
    floor_secs, unix,
};
use crate::clock::Clock;
use crate::config::BindingPolicy;
use crate::gateway::session_manager::revocation_store::{Revocation, RevocationStore, StoreError};

impl SessionManager {
    /// [`logout`](Self::logout) at `now`.
    pub fn logout_at(&self, session: &Session, now: SystemTime) -> Result<(), SessionError> {
        self.end_session(session, "logout", now)
    }

    /// [`list`](Self::list) at `now`.
    pub fn list_at(&self, session: &Session, now: SystemTime) -> Vec<SessionSummary> {
        let now = floor_secs(now);
        let sub = session.subject();
        let mut live: Vec<LiveSession> = self
            .index
            .live_sessions(sub, now)
            .into_iter()
            .filter(|s| {
                !self
                    .store
                    .is_revoked_at("", &s.sid.to_string(), sub, unix(s.created()), unix(now))
            })
            .collect();
        // Verified tokens carry canonical ids, so both parse.
        let own = RandomId::parse(session.session_id());
        let own_jti = RandomId::parse(session.jti());
        // After a restart the index is empty, but the asking session is
        // certainly live: list it.
        if let (Some(sid), Some(jti)) = (own, own_jti)
            && !live.iter().any(|s| s.sid == sid)
        {
            let current = LiveSession::new(
                sid,
                jti,
                session.claims().auth_time(),
                self.idle_end(session).unwrap_or(session.expires_at()),
            );
            live.push(current);
            live.sort_by_key(LiveSession::created);
        }
        live.into_iter()
            .map(|s| SessionSummary {
                current: Some(s.sid) == own,
                sid: s.sid.to_string(),
                created_at: s.created(),
                expires_at: s.expires(),
            })
            .collect()
    }

    /// [`revoke_own`](Self::revoke_own) at `now`.
    pub fn revoke_own_at(
        &self,
        session: &Session,
        target: &str,
        now: SystemTime,
    ) -> Result<(), SessionError> {
        let now = floor_secs(now);
        let sub = session.subject();
        // Ids are public values (they travel in signed tokens and upstream
        // headers): plain comparisons. Only this subject's sessions are
        // searched, so another subject's sid is indistinguishable from none.
        if target == session.session_id() || target == session.jti() {
            return self.end_session(session, "revoke_own", now);
        }
        // Indexed ids are canonical: text that is not cannot name one.
        let target = RandomId::parse(target).ok_or(SessionError::NotFound)?;
        let found = self
            .index
            .live_sessions(sub, now)
            .into_iter()
            .find(|s| s.sid == target || s.jti == target)
            .ok_or(SessionError::NotFound)?;
        let until = self.limits.family_until(found.created(), found.expires());
        self.revoke_quietly(Revocation::session(found.sid, until), now);
        self.index.remove(sub, found.sid);
        self.forget_shared(Some(sub), &found.sid.to_string());
        self.log_revoked(sub, &found.sid.to_string(), "revoke_own");
        Ok(())
    }

    /// [`admin_revoke`](Self::admin_revoke) at `now`.
    pub fn admin_revoke_at(
        &self,
        session: &Session,
        what: AdminRevoke,
        now: SystemTime,
    ) -> Result<(), SessionError> {
        if !session.has_scope(ADMIN_SCOPE) {
            return Err(SessionError::Forbidden);
        }
        let now = floor_secs(now);
        // The target's expiry is unknown here: revoke for as long as any
        // token issued up to now can live.
        let until = self.limits.anything_until(now);
        let kind = what.kind();
        match what {
            AdminRevoke::Token(jti) => self.revoke_checked(Revocation::token(jti, until), now)?,
            AdminRevoke::Session(sid) => {
                self.revoke_checked(Revocation::session(&sid, until), now)?;
                // Only canonical ids are indexed.
                if let Some(id) = RandomId::parse(&sid) {
                    self.index.remove_everywhere(id);
                    // Only a canonical id can be in the fleet's index, and
                    // only such an id goes into a Redis key name.
                    self.forget_shared(None, &sid);
                }
            }
            AdminRevoke::Subject(sub) => {
                // Every token of `sub` with iat ≤ now, across all sessions.
                self.revoke_checked(Revocation::subject(&sub, unix(now), until), now)?;
                self.index.remove_subject(&sub);
                self.forget_subject_shared(&sub);
            }
        }
        tracing::info!(
            event = "admin_revoke",
            kind,
            by = %session.subject(),
            "revoked by an administrator"
        );
        Ok(())
    }

    /// The claims of `session` and its idle and absolute limits.
    pub fn info(&self, session: &Session) -> SessionInfo {
        let c = session.claims();
        SessionInfo {
            sub: c.sub().to_owned(),
            sid: c.sid().to_owned(),
            jti: c.jti().to_owned(),
            scope: c.scopes().to_vec(),
            iss: c.claims().iss.clone(),
            aud: c.claims().aud.clone(),
            typ: c.token_type(),
            kid: c.kid().to_owned(),
            iat: c.iat(),
            exp: c.exp(),
            auth_time: c.auth_time(),
            idle_expires_at: self.idle_end(session),
            absolute_expires_at: self.limits.absolute_end(c.auth_time()),
            binding: c.cnf().cloned(),
            binding_policy: match self.binding {
                BindingPolicy::Off => "off",
                BindingPolicy::Optional => "optional",
                BindingPolicy::Required => "required",
            },
        }
    }

    /// When the session ends unless refreshed: the expiry of the refresh
    /// token minted with this session token. `None` without refresh.
    fn idle_end(&self, session: &Session) -> Option<SystemTime> {
        let c = session.claims();
        self.limits.refresh.then(|| {
            let idle =
                floor_secs(c.iat()) + Duration::from_secs(self.limits.idle_timeout.as_secs());
            idle.min(self.limits.absolute_end(c.auth_time()))
        })
    }

    /// Revokes the session of `session` (its whole family) and forgets it.
    fn end_session(
        &self,
        session: &Session,
        reason: &'static str,
        now: SystemTime,
    ) -> Result<(), SessionError> {
        let (sub, sid) = (session.subject(), session.session_id());
        let until = self
            .limits
            .family_until(session.claims().auth_time(), session.expires_at());
        self.revoke_checked(Revocation::session(sid, until), floor_secs(now))?;
        if let Some(id) = RandomId::parse(sid) {
            self.index.remove(sub, id);
        }
        self.forget_shared(Some(sub), sid);
        self.log_revoked(sub, sid, reason);
        Ok(())
    }

    /// Revokes a session the per-user limit pushed out.
    pub(super) fn evict(&self, sub: &str, old: &LiveSession, now: SystemTime) {
        let until = self.limits.family_until(old.created(), old.expires());
        self.revoke_quietly(Revocation::session(old.sid, until), now);
        self.log_revoked(sub, &old.sid.to_string(), "session_limit");
    }

    /// Revokes with an id known to be valid (from a verified token).
    pub(super) fn revoke_quietly(&self, revocation: Revocation, now: SystemTime) {
        if let Err(e) = self.revoke_checked(revocation, now) {
            // Unreachable for ids from verified tokens (43 characters).
            tracing::error!(
                event = "revocation_refused",
                code = e.code(),
                "revocation refused"
            );
        }
    }

    /// Puts `revocation` in force. A journal failure is logged, not
    /// returned: the revocation already holds in memory, and the store
    /// reports itself degraded.
    fn revoke_checked(&self, revocation: Revocation, now: SystemTime) -> Result<(), SessionError> {
        match self.store.revoke_at(revocation, unix(now)) {
            Ok(()) => Ok(()),
            Err(StoreError::NotPersisted { source }) => {
                tracing::warn!(
                    event = "revocation_not_persisted",
                    error = %source,
                    "revocation in force in memory only; it will not survive a restart"
                );
                Ok(())
            }
            Err(StoreError::InvalidId) => {
                Err(SessionError::InvalidRequest("id must be 1-256 bytes"))
            }
        }
    }

    pub(super) fn log_revoked(&self, sub: &str, sid: &str, reason: &'static str) {
        tracing::info!(
            event = "session_revoked",
            sub = %sub,
            sid_prefix = sid_prefix(sid),
            reason,
            "session revoked"
        );
    }
}

/// Resolves at the session token's `exp` (wall clock) or when the session
/// is revoked, whichever comes first.
pub(super) fn session_end(
    store: Arc<RevocationStore>,
    clock: Arc<dyn Clock>,
    session: &Session,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
    // The claims are shared (one reference count), not copied per request.
    let session = session.clone();
    let (iat, exp) = (unix(session.claims().iat()), session.expires_at());
    Box::pin(async move {
        let (jti, sid, sub) = (session.jti(), session.session_id(), session.subject());
        tokio::select! {
            () = store.wait_revoked(jti, sid, sub, iat) => {}
            () = wall_clock_deadline(clock.as_ref(), exp) => {}
        }
    })
}

/// Waits until the wall clock reaches `deadline`. Sleeps in bounded steps
/// and re-reads the clock after each: a monotonic timer does not advance
/// while the host is suspended and ignores clock steps (PITFALLS C2).
async fn wall_clock_deadline(clock: &dyn Clock, deadline: SystemTime) {
    loop {
        let Ok(left) = deadline.duration_since(clock.now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(DEADLINE_STEP)).await;
    }
}

/// Longest sleep between wall-clock checks: after a suspend a stream
/// outlives its token by at most this; 10,000 streams wake ~330 times/s.
const DEADLINE_STEP: Duration = Duration::from_secs(30);
