//! Replay nonces shared by the fleet: `SET <prefix>:n:<32 hex> 1 NX PX <ttl>`.
//!
//! The local [`ReplayGuard`](crate::gateway::replay_protection::ReplayGuard)
//! runs first (parse, window, its own moka cache: a replay to the same
//! replica never costs a round trip); only a nonce the local cache took as
//! fresh is claimed here. The key is the local cache key (SHA-256 over the
//! session id and the decoded nonce, 128 bits), never raw header bytes: the
//! client chooses the nonce, not the key.

use std::sync::Arc;
use std::time::Duration;

use super::{Cluster, ClusterError};

/// The `op` label of the nonce claim (metrics).
pub const OP: &str = "nonce";

/// A nonce the local cache accepted and the fleet still has to confirm.
/// Dropping it without [`confirm`](Self::confirm) accepts nothing: callers
/// that cannot wait must refuse the request.
#[must_use = "in cluster mode a nonce is fresh only once the fleet confirms it"]
pub struct FleetNonce {
    cluster: Arc<Cluster>,
    key: [u8; 16],
    ttl: Duration,
}

/// What the fleet said about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No replica had seen it: this request spends it.
    Fresh,
    /// Another replica (or this one, before a restart) already spent it.
    Replayed,
}

impl FleetNonce {
    /// A claim of the local cache key `key` for `ttl` (until the nonce's
    /// timestamp turns stale, plus slack for clock skew between replicas).
    pub(crate) fn new(cluster: Arc<Cluster>, key: [u8; 16], ttl: Duration) -> Self {
        Self { cluster, key, ttl }
    }

    /// `SET NX PX`, bounded by `command_timeout`. An error means Redis
    /// could not answer: the caller refuses (503), never accepts. A
    /// timed-out SET may still run later, so the client must retry with a
    /// fresh nonce (the local cache refuses this one as a replay anyway).
    pub async fn confirm(self) -> Result<Claim, ClusterError> {
        let key = self.cluster.key(&nonce_suffix(&self.key));
        let ttl_ms = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        let answer: Option<String> = self.cluster.query(OP, &cmd).await.inspect_err(|_| {
            self.cluster.metrics().unavailable(OP);
        })?;
        // `OK` when the key was set; nil when it already existed.
        Ok(match answer.as_deref() {
            Some("OK") => Claim::Fresh,
            None => Claim::Replayed,
            Some(_) => {
                let e = ClusterError::Response;
                self.cluster.metrics().error(OP, &e);
                self.cluster.metrics().unavailable(OP);
                return Err(e);
            }
        })
    }
}

impl std::fmt::Debug for FleetNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetNonce")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Writes `nonces` back into a Redis that lost its data (`SET NX PX`, in
/// pipelines of 256, each within `command_timeout`): a nonce spent before
/// the wipe stays spent for the whole fleet. `NX`, so a key another replica
/// already re-seeded (or a newer claim) is left alone. Returns how many
/// were written.
pub async fn reseed(
    cluster: &Cluster,
    nonces: &[([u8; 16], Duration)],
) -> Result<usize, ClusterError> {
    let mut written = 0;
    for chunk in nonces.chunks(256) {
        let mut pipe = redis::pipe();
        for (key, ttl) in chunk {
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            pipe.cmd("SET")
                .arg(cluster.key(&nonce_suffix(key)))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        let () = cluster.pipeline("nonce_reseed", &pipe).await?;
        written += chunk.len();
    }
    Ok(written)
}

/// `n:<32 lower-case hex>`.
fn nonce_suffix(key: &[u8; 16]) -> String {
    format!("n:{}", super::hex(key))
}

/// Slack added to a nonce key's lifetime in Redis: replicas' clocks may
/// differ by a few seconds, and a key must outlive the last second at
/// which any replica would still accept its timestamp.
pub const TTL_SLACK: Duration = Duration::from_secs(5);

/// How long the fleet keeps a nonce whose local entry matters until the
/// Unix second `expires_at`: the time left, plus [`TTL_SLACK`].
pub fn fleet_ttl(expires_at: u64, now_unix: u64) -> Duration {
    Duration::from_secs(expires_at.saturating_sub(now_unix)).saturating_add(TTL_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_32_hex_digits_of_the_cache_key() {
        let mut key = [0u8; 16];
        key[0] = 0xab;
        key[15] = 0x01;
        assert_eq!(nonce_suffix(&key), "n:ab000000000000000000000000000001");
    }
}
