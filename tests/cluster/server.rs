//! The Redis server itself: TLS (`rediss://` with a private CA), a
//! password from a 0600 file, and its eviction policy (only
//! `noeviction` keeps revocations and spent nonces from being forgotten).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clawgate::config::{ClusterConfig, ClusterMode};
use clawgate::gateway::cluster::{Cluster, ClusterError, ClusterMetrics};
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::cluster::fleet::Fleet;
use crate::common::eventually_async;
use crate::common::redis_server::RedisProc;

fn cluster(config: &ClusterConfig) -> Arc<Cluster> {
    let metrics = Arc::new(ClusterMetrics::register(&mut Registry::default()));
    Cluster::open(config, metrics).unwrap().unwrap()
}

fn config_for(url: String) -> ClusterConfig {
    ClusterConfig {
        mode: ClusterMode::Redis,
        url,
        ..ClusterConfig::default()
    }
}

async fn ping(cluster: &Cluster) -> Result<String, ClusterError> {
    cluster.query("ping", &redis::cmd("PING")).await
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`:
/// (chain, key, ca).
fn server_pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("redis.crt"),
        dir.join("redis.key"),
        dir.join("ca.crt"),
    );
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

#[tokio::test]
async fn rediss_with_a_private_ca_connects_and_refuses_an_unknown_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = server_pki(dir.path());
    let redis = RedisProc::start_tls(&cert, &key, &ca);
    assert!(redis.url().starts_with("rediss://"));

    let trusted = cluster(&ClusterConfig {
        ca_path: Some(ca),
        ..config_for(redis.url())
    });
    assert_eq!(ping(&trusted).await.unwrap(), "PONG");

    // Without the CA the server's certificate is not trusted: no answer,
    // and the call still ends within its deadline.
    let untrusted = cluster(&config_for(redis.url()));
    let started = std::time::Instant::now();
    assert!(ping(&untrusted).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));

    // Plain text to a TLS port is not Redis either.
    let plain = cluster(&config_for(redis.url().replace("rediss://", "redis://")));
    assert!(ping(&plain).await.is_err());
}

#[tokio::test]
async fn the_password_comes_from_its_file_and_never_shows_in_errors() {
    const PASSWORD: &str = "correct-horse-battery";
    let redis = RedisProc::start_with_password(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path
    };
    let good = cluster(&ClusterConfig {
        password_file: Some(write("good", &format!("{PASSWORD}\n"))),
        ..config_for(redis.url())
    });
    assert_eq!(ping(&good).await.unwrap(), "PONG");

    let wrong = cluster(&ClusterConfig {
        password_file: Some(write("wrong", "not-the-password\n")),
        ..config_for(redis.url())
    });
    let error = ping(&wrong).await.unwrap_err();
    assert!(!error.to_string().contains("not-the-password"), "{error}");

    let none = cluster(&config_for(redis.url()));
    let error = ping(&none).await.unwrap_err();
    assert_eq!(error, ClusterError::Server("NOAUTH"), "{error}");
}

/// Whether `/health` names the eviction policy (`want`) within 5 s.
async fn degraded(fleet: &Fleet, want: bool) -> bool {
    eventually_async(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            health(fleet)
                .await
                .to_string()
                .contains("redis_eviction_policy")
                == want
        },
    )
    .await
}

async fn health(fleet: &Fleet) -> serde_json::Value {
    let gw = fleet.replica(0);
    gw.client().get(gw.addr(), "/health").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_makes_the_replica_unready_until_it_is_noeviction() {
    let redis = RedisProc::start();
    let mut admin = redis.client().get_connection().unwrap();
    let set_policy = |conn: &mut redis::Connection, policy: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query(conn)
            .unwrap();
    };
    set_policy(&mut admin, "volatile-lru");
    let fleet = Fleet::start_with(redis, 1, |_, _| {}).await;
    assert!(degraded(&fleet, true).await, "{}", health(&fleet).await);
    let gw = fleet.replica(0);
    let ready = gw.client().get(gw.addr(), "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("redis_eviction_policy"));

    set_policy(&mut admin, "noeviction");
    assert!(degraded(&fleet, false).await, "{}", health(&fleet).await);
    let ready = gw.client().get(gw.addr(), "/ready").await;
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
}
