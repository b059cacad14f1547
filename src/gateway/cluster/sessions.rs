//! The per-user session index shared by the fleet, for the session cap and
//! the listing.
//!
//! One HASH per subject, `<prefix>:{u:<hex128 sha256(sub)>}:sess`, field
//! `sid` -> `created_ms|expires_ms|jti` (ids only, never a token), and an
//! owner pointer `<prefix>:sid:<sid>` -> hex128(sub) for revocations that
//! name only a `sid`. The subject is hashed: user names stay out of key
//! names (and `SCAN` output), and any name makes a well-formed key.
//!
//! `session_add.lua` counts a new session and evicts the oldest ones
//! atomically; the caller revokes what it returns through the normal local
//! path (which publishes to the fleet), so an evicted session is refused
//! everywhere.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::{Cluster, ClusterError};

/// `op` labels (metrics).
pub const OP_ADD: &str = "session_add";
/// A refresh updating its session.
pub const OP_TOUCH: &str = "session_touch";
/// Logout and revocations forgetting a session.
pub const OP_REMOVE: &str = "session_remove";
/// `GET /auth/sessions`.
pub const OP_LIST: &str = "session_list";

static ADD: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/session_add.lua")));
static TOUCH: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/session_touch.lua")));

/// One session as the shared index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSession {
    /// Session id.
    pub sid: String,
    /// When it started (Unix ms; orders evictions).
    pub created_ms: u64,
    /// When it ends unless refreshed (Unix ms).
    pub expires_ms: u64,
    /// `jti` of its latest session token.
    pub jti: String,
}

impl SharedSession {
    fn value(&self) -> String {
        format!("{}|{}|{}", self.created_ms, self.expires_ms, self.jti)
    }

    /// Parses a hash field and value; `None` for anything malformed.
    fn parse(sid: String, value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, '|');
        let created_ms = parts.next()?.parse().ok()?;
        let expires_ms = parts.next()?.parse().ok()?;
        let jti = parts.next()?.to_owned();
        Some(Self {
            sid,
            created_ms,
            expires_ms,
            jti,
        })
    }
}

/// The fleet's session index, on `cluster`.
#[derive(Debug, Clone)]
pub struct SharedIndex {
    cluster: Arc<Cluster>,
}

impl SharedIndex {
    /// The index on `cluster`.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    /// The connection.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Counts `session` of `sub` against `max` at `now_ms`: drops expired
    /// entries, evicts the oldest while `max` or more remain, adds it.
    /// Returns the evicted sessions, which the caller must revoke. `keep`
    /// is how long the subject's hash outlives its newest write (the
    /// absolute limit plus leeway).
    ///
    /// One awaited call (the script), so a login waits at most one
    /// `command_timeout` on Redis. The owner pointer (another hash slot,
    /// so not in the script) is written afterwards in the background: it
    /// only serves revocations that name a bare `sid`, which still revoke
    /// without it.
    pub async fn add(
        &self,
        sub: &str,
        session: &SharedSession,
        max: usize,
        now_ms: u64,
        keep: Duration,
    ) -> Result<Vec<SharedSession>, ClusterError> {
        let owner = subject_hash(sub);
        let keep_ms = millis(keep);
        let mut invocation = ADD.prepare_invoke();
        invocation
            .key(self.hash_key(&owner))
            .arg(now_ms)
            .arg(max)
            .arg(&session.sid)
            .arg(session.value())
            .arg(keep_ms);
        let flat: Vec<String> = self.cluster.script(OP_ADD, invocation).await?;
        let mut set = redis::cmd("SET");
        set.arg(self.sid_key(&session.sid))
            .arg(&owner)
            .arg("PX")
            .arg(keep_ms);
        let cluster = Arc::clone(&self.cluster);
        tokio::spawn(async move {
            let _: Result<(), ClusterError> = cluster.query(OP_ADD, &set).await;
        });
        let mut evicted = Vec::with_capacity(flat.len() / 2);
        let mut pairs = flat.into_iter();
        while let (Some(sid), Some(value)) = (pairs.next(), pairs.next()) {
            // The script only returns well-formed values it parsed itself;
            // a sid with a damaged value is still evicted (and revoked).
            evicted.push(
                SharedSession::parse(sid.clone(), &value).unwrap_or(SharedSession {
                    sid,
                    created_ms: 0,
                    expires_ms: now_ms.saturating_add(keep_ms),
                    jti: String::new(),
                }),
            );
        }
        Ok(evicted)
    }

    /// A refresh of `session` (same sid, new jti and expiry): updates it,
    /// or adds it back if the hash lost it. Never evicts.
    pub async fn touch(
        &self,
        sub: &str,
        session: &SharedSession,
        keep: Duration,
    ) -> Result<(), ClusterError> {
        let mut invocation = TOUCH.prepare_invoke();
        invocation
            .key(self.hash_key(&subject_hash(sub)))
            .arg(&session.sid)
            .arg(session.value())
            .arg(millis(keep));
        let _: i64 = self.cluster.script(OP_TOUCH, invocation).await?;
        Ok(())
    }

    /// Forgets session `sid` of `sub`.
    pub async fn remove(&self, sub: &str, sid: &str) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        pipe.hdel(self.hash_key(&subject_hash(sub)), sid)
            .ignore()
            .del(self.sid_key(sid))
            .ignore();
        let () = self.cluster.pipeline(OP_REMOVE, &pipe).await?;
        Ok(())
    }

    /// Forgets session `sid` whoever owns it (through the owner pointer).
    pub async fn remove_sid(&self, sid: &str) -> Result<(), ClusterError> {
        let owner: Option<String> = self
            .cluster
            .query(OP_REMOVE, redis::cmd("GET").arg(self.sid_key(sid)))
            .await?;
        // Only a pointer this code wrote is followed: 32 hex digits.
        let Some(owner) =
            owner.filter(|o| o.len() == 32 && o.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        pipe.hdel(self.hash_key(&owner), sid)
            .ignore()
            .del(self.sid_key(sid))
            .ignore();
        let () = self.cluster.pipeline(OP_REMOVE, &pipe).await?;
        Ok(())
    }

    /// Forgets every session of `sub`.
    pub async fn remove_subject(&self, sub: &str) -> Result<(), ClusterError> {
        let () = self
            .cluster
            .query(
                OP_REMOVE,
                redis::cmd("DEL").arg(self.hash_key(&subject_hash(sub))),
            )
            .await
            .map(|_: i64| ())?;
        Ok(())
    }

    /// Every session the fleet holds for `sub` (expired ones included: the
    /// caller filters by time and by its revocation set).
    pub async fn list(&self, sub: &str) -> Result<Vec<SharedSession>, ClusterError> {
        let all: Vec<(String, String)> = self
            .cluster
            .query(
                OP_LIST,
                redis::cmd("HGETALL").arg(self.hash_key(&subject_hash(sub))),
            )
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(sid, value)| SharedSession::parse(sid, &value))
            .collect())
    }

    /// `<prefix>:{u:<hex>}:sess`: one key (so one slot) per subject.
    fn hash_key(&self, owner_hex: &str) -> String {
        self.cluster.key(&format!("{{u:{owner_hex}}}:sess"))
    }

    /// `<prefix>:sid:<sid>`.
    fn sid_key(&self, sid: &str) -> String {
        self.cluster.key(&format!("sid:{sid}"))
    }
}

/// hex of the first 128 bits of SHA-256(`sub`).
pub fn subject_hash(sub: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, sub.as_bytes());
    super::hex(&digest.as_ref()[..16])
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_ones_are_refused() {
        let s = SharedSession {
            sid: "s".to_owned(),
            created_ms: 1_700_000_000_123,
            expires_ms: 1_700_000_900_000,
            jti: "j|k".to_owned(),
        };
        assert_eq!(SharedSession::parse("s".to_owned(), &s.value()), Some(s));
        assert_eq!(SharedSession::parse("s".to_owned(), "x|1|j"), None);
        assert_eq!(SharedSession::parse("s".to_owned(), "1"), None);
    }

    #[test]
    fn the_subject_hash_is_128_bits_of_hex() {
        let h = subject_hash("alice");
        assert_eq!(h.len(), 32);
        assert_ne!(h, subject_hash("bob"));
    }
}
