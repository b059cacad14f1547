//! Replay nonces across replicas: a nonce spent on one replica is refused
//! on every other (`SET NX PX` on the shared Redis), and a Redis that
//! cannot answer makes protected requests fail closed (503), never open.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::cluster::fleet::Fleet;
use crate::common::redis_server::RedisProc;
use crate::common::{TestGateway, TestResponse, eventually_async, replay_headers};

/// One HTTP/2 connection to `gw`: many requests, one TLS handshake.
pub(super) async fn h2(gw: &TestGateway) -> SendRequest<Full<Bytes>> {
    let tls = gw.client().connect(gw.addr()).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `req` on an HTTP/2 connection and buffers the answer.
pub(super) async fn send_h2(
    sender: &SendRequest<Full<Bytes>>,
    mut req: Request<Full<Bytes>>,
) -> TestResponse {
    *req.uri_mut() = format!("https://localhost{}", req.uri()).parse().unwrap();
    let mut sender = sender.clone();
    sender.ready().await.unwrap();
    crate::common::buffered(sender.send_request(req).await.unwrap()).await
}

/// A protected POST to the upstream with this nonce and timestamp.
pub(super) fn post_with(token: &str, nonce: &str, timestamp: &str) -> Request<Full<Bytes>> {
    Request::post("/v1/items")
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-nonce", nonce)
        .header("x-request-timestamp", timestamp)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_accepted_once_across_three_replicas() {
    // 3,000 requests, three gateways and Redis on two cores, beside the
    // other tests: the counts are the point here, so the deadline is
    // generous (the bound itself is tested below with the default).
    let fleet = Fleet::start_with(RedisProc::start(), 3, |c, _| {
        c.cluster.command_timeout = Duration::from_millis(500);
        c.cluster.stale_after = Duration::from_secs(2);
    })
    .await;
    let token = fleet.replica(0).token("alice", &["read"]);
    let mut conns = Vec::new();
    for gw in &fleet.replicas {
        conns.push(h2(gw).await);
    }
    let (mut accepted, mut replayed, mut other) = (0usize, 0usize, Vec::new());
    let started = Instant::now();
    // 1,000 nonces, each sent to the three replicas at once; 25 nonces
    // (75 requests) in flight at a time.
    for _batch in 0..40 {
        let mut sends = Vec::new();
        for _ in 0..25 {
            let (nonce, ts) = replay_headers();
            for conn in &conns {
                sends.push(send_h2(conn, post_with(&token, &nonce, &ts)));
            }
        }
        for r in join_all(sends).await {
            match (r.status, r.json()["error"].as_str().map(str::to_owned)) {
                (200, _) => accepted += 1,
                (409, Some(code)) if code == "replay_detected" => replayed += 1,
                (status, code) => other.push((status, code)),
            }
        }
    }
    assert!(
        other.is_empty(),
        "unexpected answers: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(accepted, 1_000, "each nonce accepted exactly once");
    assert_eq!(replayed, 2_000, "the other two copies refused as replays");
    eprintln!(
        "3,000 protected POSTs over 3 replicas in {:?}",
        started.elapsed()
    );

    // The fleet's answer shows on each replica's replay metric.
    let mut refused = 0u64;
    for gw in &fleet.replicas {
        let text = gw.metrics_text().await;
        refused += metric(
            &text,
            "clawgate_replay_rejections_total{code=\"replay_detected\"}",
        );
    }
    assert_eq!(refused, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_fails_posts_closed_within_the_timeout_and_gets_keep_working() {
    let fleet = Fleet::start(1).await;
    let gw = fleet.replica(0);
    let token = gw.token("alice", &["read"]);
    let conn = h2(gw).await;
    let command_timeout = gw.config.cluster.command_timeout;
    // Warm: the connection to Redis exists before the pause.
    let (nonce, ts) = replay_headers();
    assert_eq!(
        send_h2(&conn, post_with(&token, &nonce, &ts)).await.status,
        200
    );

    fleet.redis.pause();
    for _ in 0..3 {
        let (nonce, ts) = replay_headers();
        let started = Instant::now();
        let r = send_h2(&conn, post_with(&token, &nonce, &ts)).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert_eq!(r.json()["error"], "replay_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        // command_timeout + 50 ms, plus scheduling on two loaded cores.
        let bound = command_timeout + Duration::from_millis(50) + Duration::from_millis(250);
        assert!(
            took <= bound,
            "a POST waited {took:?} on a paused Redis (bound {bound:?})"
        );
    }
    // Reads need no nonce: served from local state while Redis is away.
    let get = Request::get("/v1/items")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let started = Instant::now();
    assert_eq!(send_h2(&conn, get).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    let text = gw.metrics_text().await;
    assert!(
        metric(&text, "clawgate_cluster_unavailable_total{op=\"nonce\"}") >= 3,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "clawgate_replay_rejections_total{code=\"replay_unavailable\"}"
        ) >= 3
    );
    crate::common::metrics_doc::assert_documented(&text, "clawgate_");

    fleet.redis.resume();
    let recovered = eventually_async(Duration::from_secs(3), Duration::from_millis(50), || {
        let (nonce, ts) = replay_headers();
        let req = post_with(&token, &nonce, &ts);
        let conn = &conn;
        async move { send_h2(conn, req).await.status == 200 }
    })
    .await;
    assert!(recovered, "POSTs still refused 3 s after SIGCONT");
}

/// Redis restarted empty: the replicas write their live nonces back when
/// they see the new epoch, so a nonce spent before the wipe is still
/// refused on a replica that never saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_spent_before_redis_lost_its_data_stays_spent_on_every_replica() {
    let mut fleet = Fleet::start(2).await;
    let token = fleet.replica(0).token("alice", &["read"]);
    let (nonce, timestamp) = replay_headers();
    let first = h2(fleet.replica(0)).await;
    assert_eq!(
        send_h2(&first, post_with(&token, &nonce, &timestamp))
            .await
            .status,
        200
    );
    fleet.redis.restart_empty();
    // Re-seeded: the key is back (written by replica 0, the only one that
    // holds the nonce).
    let client = fleet.redis.client();
    assert!(
        eventually_async(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async {
                let Ok(mut conn) = client.get_connection() else {
                    return false;
                };
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg("cg:n:*")
                    .query(&mut conn)
                    .unwrap_or_default();
                !keys.is_empty()
            }
        )
        .await,
        "the nonce was not written back within 5 s of the wipe"
    );
    let other = h2(fleet.replica(1)).await;
    let replay = send_h2(&other, post_with(&token, &nonce, &timestamp)).await;
    assert_eq!(
        replay.status,
        409,
        "{}",
        String::from_utf8_lossy(&replay.body)
    );
    assert_eq!(replay.json()["error"], "replay_detected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_refuses_posts_at_once() {
    let mut fleet = Fleet::start(1).await;
    let token = fleet.replica(0).token("alice", &["read"]);
    let conn = h2(fleet.replica(0)).await;
    let command_timeout = fleet.replica(0).config.cluster.command_timeout;
    fleet.redis.kill();
    let (nonce, ts) = replay_headers();
    let started = Instant::now();
    let r = send_h2(&conn, post_with(&token, &nonce, &ts)).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "replay_unavailable");
    assert!(started.elapsed() <= command_timeout + Duration::from_millis(300));
    // The nonce stays spent locally: the same request is a replay here.
    let again = send_h2(&conn, post_with(&token, &nonce, &ts)).await;
    assert_eq!(again.status, 409);
}

/// The value of the sample `name` (0 when absent).
pub(super) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A signed proof's nonce (`jti`) is spent fleet-wide too: the same
/// proof sent to three replicas at once gets through exactly once, on
/// forwarded requests and on `/auth/refresh` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_is_accepted_once_across_replicas() {
    use clawgate::binding_client::BindingClient;
    use clawgate::config::{BindingPolicy, UserConfig};
    use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;

    let redis = RedisProc::start();
    let fleet = Fleet::start_with(redis, 3, |c, _| {
        c.auth.users = vec![UserConfig {
            name: "dana".to_owned(),
            password_hash: insecure_hash_password_for_tests("pw-dana").unwrap(),
            scopes: vec![],
        }];
        c.auth.binding = BindingPolicy::Optional;
        c.cluster.command_timeout = Duration::from_millis(500);
        c.cluster.stale_after = Duration::from_secs(2);
    })
    .await;
    let client = BindingClient::generate().unwrap();
    let body = serde_json::json!({
        "username": "dana", "password": "pw-dana",
        "client_key": client.key().public_paserk(),
    });
    let gw0 = fleet.replica(0);
    let login = gw0
        .client()
        .send(gw0.addr(), crate::common::post_json("/auth/login", &body))
        .await;
    assert_eq!(login.status, 200, "{login:?}");
    let session = login.json()["session_token"].as_str().unwrap().to_owned();
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    let mut conns = Vec::new();
    for gw in &fleet.replicas {
        conns.push(h2(gw).await);
    }
    let (mut accepted, mut replayed) = (0, 0);
    for _ in 0..30 {
        let proof = client.proof("POST", "/v1/things", &session).unwrap();
        let sends = conns.iter().map(|conn| {
            let req = Request::post("/v1/things")
                .header("authorization", format!("Bearer {session}"))
                .header("clawgate-proof", &proof)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            send_h2(conn, req)
        });
        for r in join_all(sends).await {
            match r.status {
                200 => accepted += 1,
                401 if r.json()["error"] == "proof_replayed" => replayed += 1,
                _ => panic!("unexpected {r:?}"),
            }
        }
    }
    assert_eq!((accepted, replayed), (30, 60));

    // The refresh route checks the proof on the blocking pool: the same
    // proof for the same refresh request is spent once in the fleet.
    let proof = client.proof("POST", "/auth/refresh", &refresh).unwrap();
    let sends = conns.iter().map(|conn| {
        let mut req = crate::common::post_json(
            "/auth/refresh",
            &serde_json::json!({ "refresh_token": refresh }),
        );
        req.headers_mut()
            .insert("clawgate-proof", proof.parse().unwrap());
        send_h2(conn, req)
    });
    let codes: Vec<(u16, serde_json::Value)> = join_all(sends)
        .await
        .into_iter()
        .map(|r| (r.status, r.json()["error"].clone()))
        .collect();
    let proof_replays = codes
        .iter()
        .filter(|(s, e)| *s == 401 && e == "proof_replayed")
        .count();
    assert_eq!(proof_replays, 2, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "{codes:?}"
    );
}

/// Added latency of a protected POST (one `SET NX PX`) and of a GET (none)
/// in cluster mode against standalone, sequential on one HTTP/2
/// connection each. Figures, not gates: run with
/// `cargo test --release --test cluster_tests nonce_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run on a quiet machine with --ignored --nocapture"]
async fn nonce_latency_cluster_against_standalone() {
    async fn measure(gw: &TestGateway, post: bool) -> (Duration, Duration) {
        let token = gw.token("perf", &["read"]);
        let conn = h2(gw).await;
        let mut took = Vec::with_capacity(3_000);
        for i in 0..3_500 {
            // A protected method without a body: DELETE. (A POST with a
            // body measures the loopback upstream's delayed ACK, 40 ms,
            // identical in both modes.)
            let req = if post {
                let (nonce, ts) = replay_headers();
                Request::delete("/v1/items/1")
                    .header("authorization", format!("Bearer {token}"))
                    .header("x-request-nonce", nonce)
                    .header("x-request-timestamp", ts)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            } else {
                Request::get("/v1/items")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            };
            let started = Instant::now();
            let r = send_h2(&conn, req).await;
            let t = started.elapsed();
            assert_eq!(r.status, 200);
            if i >= 500 {
                took.push(t);
            }
        }
        took.sort();
        (took[took.len() / 2], took[took.len() * 99 / 100])
    }
    let (standalone, _up, _) = crate::common::gateway_with_upstream(|_, _| {}).await;
    let fleet = Fleet::start(1).await;
    for round in 0..3 {
        let (sg50, sg99) = measure(&standalone, false).await;
        let (cg50, cg99) = measure(fleet.replica(0), false).await;
        let (sp50, sp99) = measure(&standalone, true).await;
        let (cp50, cp99) = measure(fleet.replica(0), true).await;
        eprintln!(
            "round {round}: GET p50 {sg50:?} -> {cg50:?}, p99 {sg99:?} -> {cg99:?}; \
             DELETE+nonce p50 {sp50:?} -> {cp50:?}, p99 {sp99:?} -> {cp99:?} (standalone -> cluster)"
        );
    }
}
