//! The per-user session limit across replicas: `session_add.lua` counts
//! every login of a user on one shared hash, so 20 concurrent logins over
//! three replicas leave exactly `max_sessions_per_user` (5) live sessions,
//! the same list on every replica, and the evicted ones refused.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clawgate::Config;
use clawgate::config::UserConfig;
use clawgate::gateway::cluster::sessions::subject_hash;
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use futures_util::future::join_all;
use http_body_util::Full;
use hyper::Request;
use serde_json::json;

use crate::cluster::fleet::Fleet;
use crate::common::redis_server::RedisProc;
use crate::common::{TestGateway, TestResponse, eventually_async, post_json};

const USER: &str = "carol";
const PASSWORD: &str = "correct horse battery";

fn with_user(c: &mut Config, _replica: usize) {
    c.auth.users = vec![UserConfig {
        name: USER.to_owned(),
        password_hash: insecure_hash_password_for_tests(PASSWORD).unwrap(),
        scopes: vec!["read".to_owned()],
    }];
    // 20 logins from one address in one minute are this test, not abuse.
    c.auth.login_attempts_per_user_per_client_per_minute = 1_000;
    c.auth.login_attempts_per_user_per_minute = 1_000;
    c.auth.rate_limit_per_minute = 10_000;
    // 20 concurrent TLS logins on three in-process gateways and Redis, on
    // two cores beside the other tests: the counts are the point, so the
    // Redis deadline is generous (`redis_unavailable_at_login_is_503…`
    // checks the refusal itself).
    c.cluster.command_timeout = Duration::from_millis(500);
    c.cluster.stale_after = Duration::from_secs(2);
}

async fn login(gw: &TestGateway) -> TestResponse {
    let body = json!({"username": USER, "password": PASSWORD});
    gw.client()
        .send(gw.addr(), post_json("/auth/login", &body))
        .await
}

async fn get(gw: &TestGateway, path: &str, token: &str) -> TestResponse {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    gw.client().send(gw.addr(), req).await
}

/// The `sid` claim of a v4.public token (the payload is readable; the
/// gateway verified it when it minted it).
fn sid_of(token: &str) -> String {
    // v4.public.<payload+signature>[.<footer>]
    let body = token.split('.').nth(2).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&raw[..raw.len() - 64]).unwrap();
    payload["sid"].as_str().unwrap().to_owned()
}

fn hash_key() -> String {
    format!("cg:{{u:{}}}:sess", subject_hash(USER))
}

fn redis_sids(redis: &RedisProc) -> BTreeSet<String> {
    let mut con = redis.client().get_connection().unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS").arg(hash_key()).query(&mut con).unwrap();
    fields.into_iter().collect()
}

fn sid_pointers(redis: &RedisProc) -> usize {
    let mut con = redis.client().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("cg:sid:*").query(&mut con).unwrap();
    keys.len()
}

/// The sids `GET /auth/sessions` lists on `gw` for `token`, and `partial`.
async fn listed(gw: &TestGateway, token: &str) -> (BTreeSet<String>, bool) {
    let r = get(gw, "/auth/sessions", token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = r.json();
    let sids = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_str().unwrap().to_owned())
        .collect();
    (sids, body["partial"].as_bool().unwrap())
}

/// 20 concurrent logins spread over the replicas: (replica, token) each.
async fn twenty_logins(fleet: &Fleet) -> Vec<(usize, String)> {
    let logins = (0..20).map(|i| {
        let replica = i % fleet.replicas.len();
        let gw = fleet.replica(replica);
        async move { (replica, login(gw).await) }
    });
    join_all(logins)
        .await
        .into_iter()
        .map(|(replica, r)| {
            assert_eq!(r.status, 200, "login on replica {replica}: {:?}", r.body);
            (
                replica,
                r.json()["session_token"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_logins_over_three_replicas_leave_five() {
    let fleet = Fleet::start_with(RedisProc::start(), 3, with_user).await;
    let tokens = twenty_logins(&fleet).await;
    let live = redis_sids(&fleet.redis);
    assert_eq!(live.len(), 5, "the fleet's index holds exactly the limit");
    let (kept, evicted): (Vec<_>, Vec<_>) =
        tokens.iter().partition(|(_, t)| live.contains(&sid_of(t)));
    assert_eq!(kept.len(), 5);
    assert_eq!(evicted.len(), 15);

    // The same list on every replica, asked with a live token.
    let (_, live_token) = kept[0];
    for gw in &fleet.replicas {
        let (sids, partial) = listed(gw, live_token).await;
        assert!(!partial);
        assert_eq!(sids, live, "every replica lists the fleet's five");
    }
    // The live ones work everywhere.
    for (_, token) in &kept {
        for gw in &fleet.replicas {
            assert_eq!(get(gw, "/v1/items", token).await.status, 200);
        }
    }
    // An evicted session is refused at once by the replica that evicted it
    // (it revoked it through its normal local path), whichever that was:
    // at least one replica refuses each of them.
    for (_, token) in &evicted {
        let mut refused = 0;
        for gw in &fleet.replicas {
            if get(gw, "/v1/items", token).await.status == 401 {
                refused += 1;
            }
        }
        assert!(
            refused >= 1,
            "an evicted session is still accepted by every replica"
        );
    }
}

/// A session evicted on one replica is refused by every replica within
/// 1 s (the eviction travels as a revocation through the fleet's stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_sessions_are_refused_by_every_replica_within_a_second() {
    let fleet = Fleet::start_with(RedisProc::start(), 3, with_user).await;
    let tokens = twenty_logins(&fleet).await;
    let live = redis_sids(&fleet.redis);
    assert_eq!(live.len(), 5);
    let evicted: Vec<&String> = tokens
        .iter()
        .map(|(_, t)| t)
        .filter(|t| !live.contains(&sid_of(t)))
        .collect();
    assert_eq!(evicted.len(), 15);
    for gw in &fleet.replicas {
        for token in &evicted {
            let refused = eventually_async(
                Duration::from_secs(1),
                Duration::from_millis(50),
                || async { get(gw, "/v1/items", token).await.status == 401 },
            )
            .await;
            assert!(
                refused,
                "an evicted session still works on a replica after 1 s"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_leaves_the_list_of_every_replica() {
    let fleet = Fleet::start_with(RedisProc::start(), 2, with_user).await;
    let first = login(fleet.replica(0)).await.json()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = login(fleet.replica(1)).await.json()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (sids, _) = listed(fleet.replica(1), &second).await;
    assert_eq!(sids.len(), 2);
    let req = Request::post("/auth/logout")
        .header("authorization", format!("Bearer {first}"))
        .header("x-request-nonce", crate::common::replay_headers().0)
        .header("x-request-timestamp", crate::common::replay_headers().1)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = fleet
        .replica(0)
        .client()
        .send(fleet.replica(0).addr(), req)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let gone = eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(50),
        || async { listed(fleet.replica(1), &second).await.0.len() == 1 },
    )
    .await;
    assert!(
        gone,
        "the logged-out session is still listed on the other replica"
    );
    assert_eq!(redis_sids(&fleet.redis).len(), 1);

    // An admin revocation by bare sid, on another replica than the one
    // that issued the session, finds its entry through the owner pointer.
    let pointed = eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { sid_pointers(&fleet.redis) == 1 },
    )
    .await;
    assert!(pointed);
    let sid = sid_of(&second);
    let admin = fleet.replica(0).token("root", &["admin"]);
    let (nonce, ts) = crate::common::replay_headers();
    let mut req = post_json("/admin/revoke", &json!({ "sid": sid }));
    let headers = req.headers_mut();
    headers.insert("authorization", format!("Bearer {admin}").parse().unwrap());
    headers.insert("x-request-nonce", nonce.parse().unwrap());
    headers.insert("x-request-timestamp", ts.parse().unwrap());
    let r = fleet
        .replica(0)
        .client()
        .send(fleet.replica(0).addr(), req)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let removed = eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(50),
        || async { redis_sids(&fleet.redis).is_empty() && sid_pointers(&fleet.redis) == 0 },
    )
    .await;
    assert!(
        removed,
        "an admin revocation by sid left the entry in the fleet's index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unavailable_at_login_is_503_and_nothing_is_created() {
    let fleet = Fleet::start_with(RedisProc::start(), 1, with_user).await;
    let gw = fleet.replica(0);
    let first = login(gw).await;
    assert_eq!(first.status, 200);
    let token = first.json()["session_token"].as_str().unwrap().to_owned();
    let before = redis_sids(&fleet.redis);
    assert_eq!(before.len(), 1);
    // The owner pointer is written in the background after the script.
    let pointed = eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { sid_pointers(&fleet.redis) == 1 },
    )
    .await;
    assert!(pointed, "no owner pointer for the first session");
    let pointers_before = 1;

    fleet.redis.pause();
    let started = Instant::now();
    let r = login(gw).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.json()["error"], "session_store_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json().get("session_token").is_none());
    // argon2 + a TLS handshake + the bounded Redis call, on loaded cores.
    assert!(took < Duration::from_secs(2), "login waited {took:?}");
    // The listing falls back to this replica's own index, marked partial.
    let (sids, partial) = listed(gw, &token).await;
    assert!(partial);
    assert_eq!(sids, before);
    let text = gw.metrics_text().await;
    assert!(
        text.contains("clawgate_cluster_unavailable_total{op=\"session_add\"} 1"),
        "{text}"
    );
    crate::common::metrics_doc::assert_documented(&text, "clawgate_");
    fleet.redis.resume();

    // Whatever the timed-out call left in Redis is taken back out.
    let clean = eventually_async(
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async {
            redis_sids(&fleet.redis) == before && sid_pointers(&fleet.redis) == pointers_before
        },
    )
    .await;
    assert!(clean, "a refused login left an entry in the fleet's index");
    let (sids, partial) = listed(gw, &token).await;
    assert!(!partial);
    assert_eq!(sids, before);
    // And logins work again.
    let recovered = eventually_async(
        Duration::from_secs(3),
        Duration::from_millis(100),
        || async { login(gw).await.status == 200 },
    )
    .await;
    assert!(recovered);
    assert_eq!(redis_sids(&fleet.redis).len(), 2);
}

/// The scripts on their own, against a real server: eviction order, the
/// newcomer never evicted, expiry, touch keeping the start.
#[tokio::test]
async fn session_add_and_touch_scripts() {
    use clawgate::config::{ClusterConfig, ClusterMode};
    use clawgate::gateway::cluster::sessions::{SharedIndex, SharedSession};
    use clawgate::gateway::cluster::{Cluster, ClusterMetrics};

    let redis = RedisProc::start();
    let config = ClusterConfig {
        mode: ClusterMode::Redis,
        url: redis.url(),
        ..ClusterConfig::default()
    };
    let metrics = std::sync::Arc::new(ClusterMetrics::register(
        &mut prometheus_client::registry::Registry::default(),
    ));
    let index = SharedIndex::new(Cluster::open(&config, metrics).unwrap().unwrap());
    let keep = Duration::from_secs(3_600);
    let s = |sid: &str, created_ms: u64, expires_ms: u64| SharedSession {
        sid: sid.to_owned(),
        created_ms,
        expires_ms,
        jti: format!("jti-{sid}"),
    };
    let sids = |list: Vec<SharedSession>| list.into_iter().map(|s| s.sid).collect::<Vec<_>>();
    let now = 1_000;
    let mut evicted = Vec::new();
    for i in 1..=7u64 {
        let new = s(&format!("s{i}"), 100 + i, 1_000_000);
        evicted.extend(sids(index.add(USER, &new, 5, now, keep).await.unwrap()));
    }
    assert_eq!(evicted, ["s1", "s2"], "the two oldest, in order");
    // A newcomer that started earlier than everyone is still not evicted.
    let older = s("s0", 1, 1_000_000);
    assert_eq!(
        sids(index.add(USER, &older, 5, now, keep).await.unwrap()),
        ["s3"]
    );
    // Ties on the start are broken by sid.
    let (a, b) = (s("tb", 500, 1_000_000), s("ta", 500, 1_000_000));
    index.add("tie", &a, 1, now, keep).await.unwrap();
    assert_eq!(
        sids(index.add("tie", &b, 1, now, keep).await.unwrap()),
        ["tb"]
    );
    // Expired entries neither count nor come back as evicted.
    let short = s("x1", 10, 2_000);
    index.add("exp", &short, 1, now, keep).await.unwrap();
    let later = s("x2", 20, 9_000);
    assert!(
        index
            .add("exp", &later, 1, 3_000, keep)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(sids(index.list("exp").await.unwrap()), ["x2"]);
    // Touch: new jti and expiry, same start; a lost entry comes back.
    let touched = SharedSession {
        jti: "jti-new".to_owned(),
        expires_ms: 50_000,
        created_ms: 99_999,
        ..later.clone()
    };
    index.touch("exp", &touched, keep).await.unwrap();
    let listed = index.list("exp").await.unwrap();
    assert_eq!(
        listed,
        [SharedSession {
            created_ms: 20,
            ..touched.clone()
        }]
    );
    index.remove("exp", "x2").await.unwrap();
    assert!(index.list("exp").await.unwrap().is_empty());
    index.touch("exp", &touched, keep).await.unwrap();
    assert_eq!(index.list("exp").await.unwrap(), [touched]);
    // The hash expires with the sessions (absolute limit + leeway).
    let mut con = redis.client().get_connection().unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(hash_key()).query(&mut con).unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{ttl}");
}
