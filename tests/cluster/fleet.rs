//! A fleet for the cluster tests: one real `redis-server`, one loopback
//! upstream, and N gateways in cluster mode sharing one keys directory
//! (the documented prerequisite), each with its own state directory,
//! certificates and node id.
#![allow(dead_code, unreachable_pub)] // shared by the topic modules

use std::path::Path;
use std::time::Duration;

use clawgate::Config;
use clawgate::config::ClusterMode;

use crate::common::TestGateway;
use crate::common::redis_server::RedisProc;
use crate::common::upstream::{self, Upstream};

/// Redis, an upstream and the replicas.
pub struct Fleet {
    pub redis: RedisProc,
    pub upstream: Upstream,
    pub replicas: Vec<TestGateway>,
    /// The keys directory every replica mounts.
    pub keys: tempfile::TempDir,
}

impl Fleet {
    /// `n` replicas on a fresh non-persistent Redis.
    pub async fn start(n: usize) -> Self {
        Self::start_with(RedisProc::start(), n, |_, _| {}).await
    }

    /// `n` replicas on `redis`, each config adjusted by `tweak` (called
    /// with the replica's index).
    pub async fn start_with(
        redis: RedisProc,
        n: usize,
        tweak: impl Fn(&mut Config, usize),
    ) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let (upstream_addr, upstream) = upstream::spawn_upstream().await;
        let mut replicas = Vec::with_capacity(n);
        for i in 0..n {
            replicas.push(start_replica(&redis.url(), keys.path(), upstream_addr, i, &tweak).await);
        }
        Self {
            redis,
            upstream,
            replicas,
            keys,
        }
    }

    /// Replica `i`.
    pub fn replica(&self, i: usize) -> &TestGateway {
        &self.replicas[i]
    }
}

/// The `[cluster]` settings every replica in these tests uses.
pub fn cluster_config(config: &mut Config, redis_url: &str, node: usize) {
    config.cluster.mode = ClusterMode::Redis;
    config.cluster.url = redis_url.to_owned();
    config.cluster.node_id = format!("replica-{node}");
    config.auth.pairing = false;
    // Tests run three gateways, Redis and the load on two cores: the
    // bounds stay the documented defaults, only the idle read is shorter.
    config.cluster.stream_block = Duration::from_millis(200);
    config.cluster.stale_after = Duration::from_secs(1);
}

async fn start_replica(
    redis_url: &str,
    keys: &Path,
    upstream: std::net::SocketAddr,
    i: usize,
    tweak: &impl Fn(&mut Config, usize),
) -> TestGateway {
    let keys = keys.to_path_buf();
    let redis_url = redis_url.to_owned();
    TestGateway::start(|c, _dir| {
        c.tokens.keys_dir = keys;
        c.upstream.url = Some(format!("http://{upstream}"));
        cluster_config(c, &redis_url, i);
        tweak(c, i);
    })
    .await
}
