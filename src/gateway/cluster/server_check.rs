//! What the gateway checks about the Redis server itself: its eviction
//! policy. Every key the cluster writes has an expiry, so any
//! `volatile-*` or `allkeys-*` policy may evict a revocation or a spent
//! nonce under memory pressure, silently reopening what it closed. Only
//! `noeviction` is safe (writes then fail with OOM, which the gateway
//! treats as unavailable and refuses, closed).
//!
//! Checked once Redis first answers and every [`RECHECK`] after (the
//! policy can change at run time). A wrong policy makes `/health`
//! degraded and `/ready` 503 (`redis_eviction_policy`) with an `alert` in
//! the log; a server that forbids `CONFIG` (managed services) gets one
//! warning and no verdict.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Cluster, ClusterError};

/// How often the policy is read again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// The one safe policy.
const SAFE_POLICY: &str = "noeviction";

/// The verdict the health probe reads (an atomic load).
#[derive(Debug, Default)]
pub struct ServerCheck {
    eviction_risk: AtomicBool,
}

impl ServerCheck {
    /// Whether the server may evict the gateway's keys.
    pub fn eviction_risk(&self) -> bool {
        self.eviction_risk.load(Ordering::Relaxed)
    }
}

/// Reads the policy into `cluster.server_check()` until the task is
/// aborted.
pub fn spawn(cluster: Arc<Cluster>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let check = cluster.server_check();
        let mut reported: Option<String> = None;
        loop {
            let answer: Result<Vec<String>, ClusterError> = cluster
                .query(
                    "config_get",
                    redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"),
                )
                .await;
            match answer {
                Ok(pair) => {
                    let policy = pair.get(1).map_or("", String::as_str);
                    let risky = policy != SAFE_POLICY;
                    check.eviction_risk.store(risky, Ordering::Relaxed);
                    if reported.as_deref() != Some(policy) {
                        if risky {
                            tracing::error!(
                                alert = "cluster_eviction_policy",
                                policy,
                                "Redis may evict the gateway's keys (revocations, spent nonces): \
                                     set maxmemory-policy noeviction; /ready answers 503 until then"
                            );
                        } else if reported.is_some() {
                            tracing::info!(
                                event = "cluster_eviction_policy_ok",
                                "Redis maxmemory-policy is noeviction again"
                            );
                        }
                        reported = Some(policy.to_owned());
                    }
                }
                // CONFIG renamed or forbidden (managed Redis): nothing
                // more can be learnt; say so once and stop asking.
                Err(ClusterError::Server(code)) => {
                    tracing::warn!(
                        event = "cluster_eviction_policy_unknown",
                        code,
                        "cannot read Redis maxmemory-policy (CONFIG refused); make sure it is noeviction"
                    );
                    return;
                }
                // Unreachable for now: the other probes report it.
                Err(_) => {}
            }
            tokio::time::sleep(RECHECK).await;
        }
    })
}
