//! The connection itself: every call is bounded by `command_timeout`
//! whether Redis is up, killed or black-holed, and recovers on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate::config::{ClusterConfig, ClusterMode};
use clawgate::gateway::cluster::{Cluster, ClusterError, ClusterMetrics};
use prometheus_client::registry::Registry;

use crate::common::eventually_async;
use crate::common::redis_server::RedisProc;

fn cluster_for(redis: &RedisProc) -> Arc<Cluster> {
    let config = ClusterConfig {
        mode: ClusterMode::Redis,
        url: redis.url(),
        node_id: "test-node".to_owned(),
        ..ClusterConfig::default()
    };
    let metrics = Arc::new(ClusterMetrics::register(&mut Registry::default()));
    Cluster::open(&config, metrics).unwrap().unwrap()
}

async fn ping(cluster: &Cluster) -> Result<String, ClusterError> {
    cluster.query("ping", &redis::cmd("PING")).await
}

#[tokio::test]
async fn commands_are_bounded_when_redis_is_killed_or_paused_and_recover() {
    let mut redis = RedisProc::start();
    let cluster = cluster_for(&redis);
    let limit = cluster.config().command_timeout + Duration::from_millis(50);
    assert_eq!(ping(&cluster).await.unwrap(), "PONG");

    // Black hole: the reply never comes; the call gives up at the deadline.
    redis.pause();
    let started = Instant::now();
    let result = ping(&cluster).await;
    assert_eq!(result, Err(ClusterError::Timeout));
    assert!(started.elapsed() <= limit, "waited {:?}", started.elapsed());
    redis.resume();
    assert!(
        eventually_async(
            Duration::from_secs(2),
            Duration::from_millis(20),
            || async { ping(&cluster).await.is_ok() }
        )
        .await,
        "no recovery within 2 s of SIGCONT"
    );

    // Killed: refused at once, never a wait past the deadline.
    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let result = ping(&cluster).await;
        assert!(result.is_err(), "a killed server answered");
        assert!(started.elapsed() <= limit, "waited {:?}", started.elapsed());
    }
    redis.restart();
    assert!(
        eventually_async(
            Duration::from_secs(3),
            Duration::from_millis(20),
            || async { ping(&cluster).await.is_ok() }
        )
        .await,
        "no recovery within 3 s of the restart"
    );
}

#[test]
fn standalone_builds_no_client() {
    let metrics = Arc::new(ClusterMetrics::register(&mut Registry::default()));
    let cluster = Cluster::open(&ClusterConfig::default(), metrics).unwrap();
    assert!(cluster.is_none());
}

#[tokio::test]
async fn a_fleet_of_three_starts_on_one_redis_and_serves() {
    let fleet = crate::cluster::fleet::Fleet::start(3).await;
    let token = fleet.replica(0).token("alice", &[]);
    for gw in &fleet.replicas {
        let response = gw
            .client()
            .send(
                gw.addr(),
                crate::common::authed("GET", "/hello", &token, ""),
            )
            .await;
        assert_eq!(response.status, 200, "a token minted on replica 0");
    }
    assert!(fleet.redis.ping());
}
