//! Refresh rotation across replicas (`refresh.lua`): exactly one rotation
//! per refresh token, grace replays answering the same pair on any
//! replica, reuse detected on any replica, 503 `refresh_unavailable`
//! (nothing spent) while Redis is black-holed, and no usable token in a
//! copy of Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawgate::Config;
use clawgate::gateway::session_manager::IssueMethod;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::fleet::Fleet;
use crate::common::redis_server::RedisProc;
use crate::common::{
    TestClient, TestGateway, TestResponse, authed, eventually_async, post_json, send_on,
};

/// Refresh on, and room for the test's request rate from one address.
fn tweak(grace: Duration) -> impl Fn(&mut Config, usize) {
    move |c, _| {
        c.tokens.refresh = true;
        c.tokens.refresh_grace = grace;
        c.auth.rate_limit_per_minute = 100_000;
    }
}

/// A fresh session of `sub` issued on `gw`: (session token, refresh token).
async fn issue(gw: &TestGateway, sub: &str) -> (String, String) {
    let sessions = Arc::clone(gw.running.sessions());
    let sub = sub.to_owned();
    // Off the async workers, as the routes call the manager.
    let pair = tokio::task::spawn_blocking(move || {
        sessions.issue(&sub, vec!["read".to_owned()], None, IssueMethod::Cli)
    })
    .await
    .unwrap()
    .unwrap();
    (
        pair.session_token().to_owned(),
        pair.refresh_token().unwrap().to_owned(),
    )
}

async fn refresh(gw: &TestGateway, refresh_token: &str) -> TestResponse {
    gw.client()
        .send(
            gw.addr(),
            post_json("/auth/refresh", &json!({ "refresh_token": refresh_token })),
        )
        .await
}

/// (session token, refresh token) of a 200 answer.
fn pair_of(response: &TestResponse) -> (String, String) {
    assert_eq!(response.status, 200, "{:?}", response.body);
    let body = response.json();
    (
        body["session_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn accepted(gw: &TestGateway, session_token: &str) -> bool {
    let response = gw
        .client()
        .send(gw.addr(), authed("GET", "/auth/session", session_token, ""))
        .await;
    match response.status {
        200 => true,
        401 => false,
        other => panic!("unexpected status {other}"),
    }
}

/// An HTTP/1.1 keep-alive connection to `gw`: the 600 refreshes below
/// measure the refresh path, not 600 TLS handshakes on two cores.
async fn keep_alive(gw: &TestGateway) -> SendRequest<Full<Bytes>> {
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let tls = client.connect(gw.addr()).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn refresh_on(sender: &mut SendRequest<Full<Bytes>>, refresh_token: &str) -> (u16, Value) {
    let mut request = post_json("/auth/refresh", &json!({ "refresh_token": refresh_token }));
    request.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("localhost"),
    );
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refresh_token_presented_at_three_replicas_rotates_once_with_one_pair() {
    const TOKENS: usize = 200;
    /// Tokens in flight at once (each at three replicas at once).
    const LANES: usize = 4;
    let fleet = Fleet::start_with(RedisProc::start(), 3, tweak(Duration::from_secs(10))).await;
    let fleet = Arc::new(fleet);
    let mut lanes: Vec<Vec<(usize, String)>> = vec![Vec::new(); LANES];
    for i in 0..TOKENS {
        let token = issue(fleet.replica(i % 3), &format!("user-{i}")).await.1;
        lanes[i % LANES].push((i, token));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes {
        let fleet = Arc::clone(&fleet);
        tasks.spawn(async move {
            let mut conns = Vec::with_capacity(3);
            for r in 0..3 {
                conns.push(keep_alive(fleet.replica(r)).await);
            }
            let mut out = Vec::with_capacity(lane.len());
            for (i, token) in lane {
                let [a, b, c] = &mut conns[..] else {
                    unreachable!()
                };
                let answers = tokio::join!(
                    refresh_on(a, &token),
                    refresh_on(b, &token),
                    refresh_on(c, &token),
                );
                out.push((i, answers));
            }
            out
        });
    }
    let mut new_refresh_tokens = std::collections::HashSet::new();
    let mut rotated = Vec::with_capacity(TOKENS);
    while let Some(result) = tasks.join_next().await {
        for (i, (a, b, c)) in result.unwrap() {
            for (replica, (status, body)) in [&a, &b, &c].into_iter().enumerate() {
                assert_eq!(*status, 200, "token {i} at replica {replica}: {body}");
            }
            let pair = |v: &Value| (v["session_token"].clone(), v["refresh_token"].clone());
            assert_eq!(pair(&a.1), pair(&b.1), "token {i}: replicas 0 and 1 differ");
            assert_eq!(pair(&a.1), pair(&c.1), "token {i}: replicas 0 and 2 differ");
            let (session, next) = pair(&a.1);
            let (session, next) = (
                session.as_str().unwrap().to_owned(),
                next.as_str().unwrap().to_owned(),
            );
            assert!(new_refresh_tokens.insert(next.clone()));
            rotated.push((i, (session, next)));
        }
    }
    // Exactly one rotation per token: 200 distinct new pairs, each live.
    assert_eq!(new_refresh_tokens.len(), TOKENS);
    let mut redis = fleet.redis.client().get_connection().unwrap();
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg("{cg}:rt:*")
        .query(&mut redis)
        .unwrap();
    assert_eq!(markers.len(), TOKENS, "one spent marker per token");
    for (i, (session, next)) in rotated.iter().take(10) {
        let gw = fleet.replica(i % 3);
        assert!(
            accepted(gw, session).await,
            "token {i}: new session refused"
        );
        // The new refresh token is a fresh, unspent one anywhere.
        pair_of(&refresh(fleet.replica((i + 1) % 3), next).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_after_the_grace_window_on_another_replica_revokes_the_family() {
    let grace = Duration::from_secs(1);
    let fleet = Fleet::start_with(RedisProc::start(), 3, tweak(grace)).await;
    let (_, spent) = issue(fleet.replica(0), "alice").await;
    let (session, _) = pair_of(&refresh(fleet.replica(0), &spent).await);
    assert!(accepted(fleet.replica(1), &session).await);
    // Within the window another replica gets the same pair back...
    let (again, _) = pair_of(&refresh(fleet.replica(2), &spent).await);
    assert_eq!(again, session);
    // ...past it, the spent token is theft wherever it shows up.
    tokio::time::sleep(grace + Duration::from_millis(1_100)).await;
    let reused = refresh(fleet.replica(1), &spent).await;
    assert_eq!(reused.status, 401);
    assert_eq!(reused.json()["error"], "invalid_token");
    assert!(
        !accepted(fleet.replica(1), &session).await,
        "the family's session token still works where the reuse was seen"
    );
    // Once the family's revocation has reached another replica, the spent
    // token is refused there before any call to Redis: the family is
    // revoked.
    assert!(
        crate::common::eventually_async(Duration::from_secs(1), Duration::from_millis(10), || {
            let session = session.clone();
            let gw = fleet.replica(2);
            async move { !accepted(gw, &session).await }
        })
        .await,
        "the family's revocation did not reach replica 2 within 1 s"
    );
    let sessions = Arc::clone(fleet.replica(2).running.sessions());
    let code = tokio::task::spawn_blocking(move || sessions.refresh(&spent).map(drop))
        .await
        .unwrap()
        .unwrap_err()
        .code();
    assert_eq!(code, "token_revoked");
}

/// The family revoked on one replica is refused by all of them within 1 s
/// (the revocation travels through the fleet's stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_revokes_the_family_on_every_replica_within_a_second() {
    let grace = Duration::from_secs(1);
    let fleet = Fleet::start_with(RedisProc::start(), 3, tweak(grace)).await;
    let (_, spent) = issue(fleet.replica(0), "bob").await;
    let (session, next) = pair_of(&refresh(fleet.replica(0), &spent).await);
    tokio::time::sleep(grace + Duration::from_millis(1_100)).await;
    assert_eq!(refresh(fleet.replica(1), &spent).await.status, 401);
    for i in 0..3 {
        let gw = fleet.replica(i);
        let refused = eventually_async(Duration::from_secs(1), Duration::from_millis(20), || {
            let session = session.clone();
            async move { !accepted(gw, &session).await }
        })
        .await;
        assert!(refused, "replica {i} still accepts the revoked family");
    }
    // The rotated refresh token belongs to the revoked family too.
    assert_eq!(refresh(fleet.replica(2), &next).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_redis_refuses_refresh_with_503_and_spends_nothing() {
    let fleet = Fleet::start_with(RedisProc::start(), 3, tweak(Duration::from_secs(10))).await;
    let (_, token) = issue(fleet.replica(0), "carol").await;
    let (_, other) = issue(fleet.replica(1), "dave").await;
    let gw = fleet.replica(1);
    let limit = gw.config.cluster.command_timeout + Duration::from_millis(300);
    fleet.redis.pause();
    for presented in [&token, &token, &other] {
        // Connected first: only the refresh itself is timed.
        let tls = gw.client().connect(gw.addr()).await.unwrap();
        let request = post_json("/auth/refresh", &json!({ "refresh_token": presented }));
        let started = Instant::now();
        let response = send_on(tls, request).await;
        let took = started.elapsed();
        assert_eq!(response.status, 503, "{:?}", response.body);
        assert_eq!(response.json()["error"], "refresh_unavailable");
        assert_eq!(response.header("retry-after"), Some("1"));
        assert!(took <= limit, "waited {took:?} (limit {limit:?})");
    }
    fleet.redis.resume();
    // Nothing was spent: the same tokens rotate once Redis answers (a
    // script queued during the pause may have run on SIGCONT: then this is
    // its stored pair, a grace replay, as retry-safety promises).
    let deadline = Instant::now() + Duration::from_secs(3);
    let rotated = loop {
        let response = refresh(gw, &token).await;
        if response.status == 200 {
            break Some(pair_of(&response));
        }
        assert_eq!(response.json()["error"], "refresh_unavailable");
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (session, _) = rotated.expect("no rotation within 3 s of SIGCONT");
    assert!(accepted(fleet.replica(2), &session).await);
    // Any replica replays that same pair within the grace window.
    assert_eq!(pair_of(&refresh(fleet.replica(0), &token).await).0, session);
    pair_of(&refresh(fleet.replica(2), &other).await);
    let metrics = gw.metrics_text().await;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("clawgate_cluster_unavailable_total{op=\"refresh\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 3, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_redis_holds_no_usable_token() {
    let fleet = Fleet::start_with(RedisProc::start(), 3, tweak(Duration::from_secs(10))).await;
    let (_, spent) = issue(fleet.replica(0), "erin").await;
    let (session, next) = pair_of(&refresh(fleet.replica(0), &spent).await);
    // A grace replay on another replica reads the stored copy.
    assert_eq!(pair_of(&refresh(fleet.replica(1), &spent).await).0, session);

    let mut redis = fleet.redis.client().get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut redis).unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with(b"{cg}:rtg:")),
        "the sealed copy is there"
    );
    let mut dump: Vec<Vec<u8>> = keys.clone();
    for key in &keys {
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut redis).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(key).query(&mut redis).unwrap()],
            "hash" => redis::cmd("HGETALL").arg(key).query(&mut redis).unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(key).query(&mut redis).unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query(&mut redis)
                .unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query(&mut redis)
                .unwrap(),
            "stream" => {
                let raw: redis::Value = redis::cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .query(&mut redis)
                    .unwrap();
                vec![format!("{raw:?}").into_bytes()]
            }
            other => panic!("unexpected key type {other}"),
        };
        dump.extend(values);
    }
    for (name, token) in [("session", &session), ("refresh", &next), ("spent", &spent)] {
        // The whole token, and any 32-character piece of its signed body.
        let body = token.split('.').nth(2).unwrap();
        let pieces: Vec<&[u8]> = std::iter::once(token.as_bytes())
            .chain(body.as_bytes().chunks(32).filter(|c| c.len() == 32))
            .collect();
        for value in &dump {
            for piece in &pieces {
                assert!(
                    !value.windows(piece.len()).any(|w| w == *piece),
                    "the {name} token (or part of it) is readable in Redis"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_spent_a_token_never_lets_a_wiped_redis_rotate_it_again() {
    let grace = Duration::from_secs(1);
    let mut fleet = Fleet::start_with(RedisProc::start(), 3, tweak(grace)).await;
    let (_, spent) = issue(fleet.replica(0), "frank").await;
    let (session, _) = pair_of(&refresh(fleet.replica(0), &spent).await);
    // Redis loses everything: the marker and the sealed copy are gone.
    fleet.redis.restart_empty();
    // Past the window (whole seconds, as tokens carry times) and past the
    // local grace copy's life (window + 1 s): the fleet is asked.
    tokio::time::sleep(grace + Duration::from_millis(2_100)).await;
    let asked_before = refresh_calls(fleet.replica(0)).await;
    // The replica whose journal holds the spend answers reuse, never a
    // second rotation (503s while the connection comes back are fine).
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let response = refresh(fleet.replica(0), &spent).await;
        if response.status != 503 || Instant::now() >= deadline {
            break response.status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 401, "a spent token was rotated again after a wipe");
    assert!(refresh_calls(fleet.replica(0)).await > asked_before);
    assert!(!accepted(fleet.replica(0), &session).await);
}

/// Answered `refresh.lua` calls of `gw`.
async fn refresh_calls(gw: &TestGateway) -> u64 {
    gw.metrics_text()
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix("clawgate_cluster_command_duration_seconds_count{op=\"refresh\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_refuses_a_family_revoked_in_redis_and_cuts_subjects_by_iat() {
    let fleet = Fleet::start_with(RedisProc::start(), 1, tweak(Duration::from_secs(10))).await;
    let gw = fleet.replica(0);
    let mut redis = fleet.redis.client().get_connection().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sid_of = |session: &str| {
        let session = gw.running.sessions().authenticate(session).unwrap();
        session.session_id().to_owned()
    };
    let mut hset = |field: String, record: serde_json::Value| {
        let () = redis::cmd("HSET")
            .arg("{cg}:rev")
            .arg(field)
            .arg(record.to_string())
            .query(&mut redis)
            .unwrap();
    };

    // A session revoked by another replica (the record only in Redis).
    let (session, token) = issue(gw, "gina").await;
    let sid = sid_of(&session);
    let record = json!({"at": now, "kind": "session", "sid": sid, "until": now + 600});
    hset(format!("s:{sid}"), record);
    assert_eq!(refresh(gw, &token).await.status, 401);
    // An expired record no longer counts.
    let (session, token) = issue(gw, "gina").await;
    let sid = sid_of(&session);
    let record = json!({"at": now - 10, "kind": "session", "sid": sid, "until": now - 5});
    hset(format!("s:{sid}"), record);
    pair_of(&refresh(gw, &token).await);

    // A subject revocation covers tokens issued up to `issued_before`...
    let (_, old) = issue(gw, "hank").await;
    let cut = now + 1;
    let record = json!({"at": now, "kind": "subject", "sub": "hank", "issued_before": cut, "until": now + 600});
    hset("u:hank".to_owned(), record);
    assert_eq!(refresh(gw, &old).await.status, 401);
    // ...and not tokens issued after it (a login after the revocation).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (_, fresh) = issue(gw, "hank").await;
    pair_of(&refresh(gw, &fresh).await);
    // Nothing was spent by the refused refreshes: no marker for them.
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg("{cg}:rt:*")
        .query(&mut fleet.redis.client().get_connection().unwrap())
        .unwrap();
    assert_eq!(markers.len(), 2, "only the two rotations left a marker");
}
