//! Revocations shared by the fleet: a revocation on one replica is refused
//! on the others within a second; an outage delays it, never loses it; a
//! Redis that lost its data is re-seeded from the replicas; a replica that
//! cannot hear from Redis says so on `/ready` and `/health`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate::gateway::session_manager::{SessionError, SessionManager};

use crate::cluster::fleet::Fleet;
use crate::common::redis_server::RedisProc;
use crate::common::{TestGateway, authed, eventually_async};

/// Ends the session of `token` on `sessions` (a logout), off the async
/// threads (it fsyncs the journal). Returns the revoked `{cg}:rev` field.
async fn logout(sessions: &Arc<SessionManager>, token: &str) -> String {
    let sessions = Arc::clone(sessions);
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        let session = sessions.authenticate(&token).expect("a live token");
        let field = format!("s:{}", session.session_id());
        sessions.logout(&session).expect("logout never fails");
        field
    })
    .await
    .unwrap()
}

/// Whether `replica` refuses `token` as revoked (the same in-memory lookup
/// every request makes; `refused_over_http` checks the 401 itself).
fn refused(replica: &TestGateway, token: &str) -> bool {
    matches!(
        replica.running.sessions().authenticate(token),
        Err(SessionError::TokenRevoked)
    )
}

async fn status(replica: &TestGateway, token: &str) -> u16 {
    replica
        .client()
        .send(replica.addr(), authed("GET", "/hello", token, ""))
        .await
        .status
}

/// Polls until every token is refused on every replica in `on`; returns
/// how long that took, or `None` past `limit`.
async fn all_refused(
    fleet: &Fleet,
    on: &[usize],
    tokens: &[String],
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let ok = eventually_async(limit, Duration::from_millis(5), || async {
        on.iter()
            .all(|&i| tokens.iter().all(|t| refused(fleet.replica(i), t)))
    })
    .await;
    ok.then(|| started.elapsed())
}

/// A metric's value in a scrape (`name` with its labels, as exposed).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The upper bound of the propagation histogram bucket holding quantile
/// `q` (seconds).
fn bucket_bound(text: &str, q: f64) -> f64 {
    let prefix = "clawgate_cluster_revocation_propagation_seconds_bucket{le=\"";
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map_or(f64::INFINITY, |b| b.0)
}

async fn hkeys(redis: &RedisProc, key: &str) -> Option<Vec<String>> {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    redis::cmd("HKEYS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .ok()
}

#[tokio::test]
async fn two_hundred_revocations_on_one_replica_are_refused_on_the_others_within_a_second() {
    let fleet = Fleet::start(3).await;
    let tokens: Vec<String> = (0..200)
        .map(|i| fleet.replica(0).token(&format!("user{i}"), &[]))
        .collect();
    for t in &tokens[..3] {
        for i in 1..3 {
            assert_eq!(status(fleet.replica(i), t).await, 200, "valid before");
        }
    }
    // Every token in use on the other replicas (verified and cached
    // there, as tokens in use are): the polling below then measures the
    // propagation, not first-time signature checks.
    for i in 1..3 {
        for t in &tokens {
            assert!(fleet.replica(i).running.sessions().authenticate(t).is_ok());
        }
    }
    // A long-lived stream (SSE, WebSocket) open on replica 2 closes when
    // its session is revoked on replica 0.
    let watched = fleet
        .replica(2)
        .running
        .sessions()
        .authenticate(&tokens[199])
        .unwrap();
    let stream_end = tokio::spawn(fleet.replica(2).running.sessions().session_end(&watched));
    let sessions = fleet.replica(0).running.sessions();
    for t in &tokens {
        logout(sessions, t).await;
    }
    tokio::time::timeout(Duration::from_secs(1), stream_end)
        .await
        .expect("the stream on replica 2 ends within 1 s")
        .unwrap();
    let took = all_refused(&fleet, &[1, 2], &tokens, Duration::from_secs(1))
        .await
        .expect("every revocation refused on replicas 1 and 2 within 1 s of the last one");
    eprintln!("200 revocations: all refused on 2 other replicas {took:?} after the last");
    // 0 misses, and the refusal is the 401 a client sees.
    for i in 1..3 {
        for t in &tokens {
            assert_eq!(status(fleet.replica(i), t).await, 401);
        }
    }
    let text = fleet.replica(1).metrics_text().await;
    let count = metric(
        &text,
        "clawgate_cluster_revocation_propagation_seconds_count",
    )
    .unwrap();
    let sum = metric(&text, "clawgate_cluster_revocation_propagation_seconds_sum").unwrap();
    // Each counted once, when it was news; a reader that timed out on
    // the loaded machine may have taken some from a snapshot instead
    // (not counted as propagation).
    assert!(
        count > 0.0 && count <= 200.0,
        "{count} propagations counted"
    );
    eprintln!(
        "propagation to replica 1 ({count} counted): mean {:.2} ms, p50 <= {} ms, p99 <= {} ms, max <= {} ms",
        sum / count * 1e3,
        bucket_bound(&text, 0.5) * 1e3,
        bucket_bound(&text, 0.99) * 1e3,
        bucket_bound(&text, 1.0) * 1e3,
    );
    assert!(bucket_bound(&text, 1.0) <= 1.0, "every one within 1 s");
    assert_eq!(
        metric(&text, "clawgate_cluster_outbox_pending"),
        Some(0.0),
        "replica 1 published nothing of its own"
    );
}

#[tokio::test]
async fn revocations_made_while_redis_is_down_reach_the_fleet_after_its_restart() {
    let fleet = Fleet::start_with(RedisProc::start_with(true), 3, |_, _| {}).await;
    let mut fleet = fleet;
    let keeper = fleet.replica(0).token("keeper", &[]);
    let tokens: Vec<String> = (0..20)
        .map(|i| fleet.replica(0).token(&format!("out{i}"), &[]))
        .collect();
    // In the fleet's copy before the outage: a control revocation.
    let before = fleet.replica(0).token("before", &[]);
    logout(fleet.replica(0).running.sessions(), &before).await;
    all_refused(&fleet, &[1, 2], &[before], Duration::from_secs(2))
        .await
        .expect("propagation before the outage");
    // Its write acknowledged too (replicas can hear of it before the
    // origin reads Redis's answer).
    assert!(
        eventually_async(
            Duration::from_secs(2),
            Duration::from_millis(20),
            || async {
                let text = fleet.replica(0).metrics_text().await;
                metric(&text, "clawgate_cluster_outbox_pending") == Some(0.0)
            }
        )
        .await
    );

    fleet.redis.kill();
    let sessions = Arc::clone(fleet.replica(0).running.sessions());
    for t in &tokens {
        let started = Instant::now();
        logout(&sessions, t).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a logout waited on Redis: {:?}",
            started.elapsed()
        );
    }
    // In force on the origin at once; validation keeps serving everywhere.
    for t in &tokens {
        assert_eq!(status(fleet.replica(0), t).await, 401);
    }
    for i in 0..3 {
        assert_eq!(
            status(fleet.replica(i), &keeper).await,
            200,
            "GET during the outage"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let text = fleet.replica(0).metrics_text().await;
    assert_eq!(
        metric(&text, "clawgate_cluster_outbox_pending"),
        Some(20.0),
        "{}",
        text.lines()
            .filter(|l| l.starts_with("clawgate_cluster"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!refused(fleet.replica(1), &tokens[0]), "no path but Redis");

    fleet.redis.restart();
    let took = all_refused(&fleet, &[1, 2], &tokens, Duration::from_secs(3))
        .await
        .expect("outage revocations enforced on replicas 1 and 2 after the restart");
    eprintln!(
        "revocations made during the outage: enforced on 2 other replicas {took:?} after the restart"
    );
    for i in 0..3 {
        assert_eq!(status(fleet.replica(i), &keeper).await, 200);
    }
    assert!(
        eventually_async(
            Duration::from_secs(2),
            Duration::from_millis(50),
            || async {
                let text = fleet.replica(0).metrics_text().await;
                metric(&text, "clawgate_cluster_outbox_pending") == Some(0.0)
            }
        )
        .await,
        "the outbox drains"
    );
    // After an outage every cluster metric of this part has been touched.
    for i in 0..2 {
        crate::common::metrics_doc::assert_documented(
            &fleet.replica(i).metrics_text().await,
            "clawgate_cluster_",
        );
    }
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_reseeded_with_the_union_of_the_replicas() {
    let mut fleet = Fleet::start(3).await;
    let mut fields = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..3 {
        for j in 0..10 {
            let t = fleet.replica(i).token(&format!("c{i}-{j}"), &[]);
            fields.push(logout(fleet.replica(i).running.sessions(), &t).await);
            tokens.push(t);
        }
    }
    all_refused(&fleet, &[0, 1, 2], &tokens, Duration::from_secs(2))
        .await
        .expect("every replica holds every revocation");
    fields.sort();

    fleet.redis.restart_empty();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = hkeys(&fleet.redis, "{cg}:rev").await.unwrap_or_default();
        last.sort();
        if last == fields {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, fields, "{{cg}}:rev within 5 s of the wipe");
    eprintln!(
        "reseeded with the union of 3 replicas in {:?}",
        started.elapsed()
    );
    for i in 0..3 {
        let text = fleet.replica(i).metrics_text().await;
        assert!(
            metric(&text, "clawgate_cluster_resyncs_total{reason=\"epoch\"}").unwrap_or(0.0) >= 1.0,
            "replica {i} saw the epoch change"
        );
    }
    // A revocation after the wipe still propagates.
    let after = fleet.replica(2).token("after", &[]);
    logout(fleet.replica(2).running.sessions(), &after).await;
    all_refused(&fleet, &[0, 1], &[after], Duration::from_secs(2))
        .await
        .expect("propagation after the reseed");
}

async fn ready_status(replica: &TestGateway) -> (u16, serde_json::Value) {
    let r = replica.client().get(replica.addr(), "/ready").await;
    (r.status, r.json())
}

async fn health(replica: &TestGateway) -> serde_json::Value {
    replica.client().get(replica.addr(), "/health").await.json()
}

#[tokio::test]
async fn a_black_holed_redis_makes_every_replica_unready_then_ready_again() {
    let fleet = Fleet::start(3).await;
    let stale_after = fleet.replica(0).config.cluster.stale_after;
    for i in 0..3 {
        assert!(
            eventually_async(
                Duration::from_secs(5),
                Duration::from_millis(50),
                || async { ready_status(fleet.replica(i)).await.0 == 200 }
            )
            .await,
            "replica {i} ready before the fault: {:?}",
            ready_status(fleet.replica(i)).await
        );
    }
    let token = fleet.replica(0).token("alice", &[]);

    fleet.redis.pause();
    let paused = Instant::now();
    for i in 0..3 {
        assert!(
            eventually_async(
                stale_after + Duration::from_secs(1) - paused.elapsed().min(stale_after),
                Duration::from_millis(25),
                || async {
                    let (code, body) = ready_status(fleet.replica(i)).await;
                    code == 503 && body["checks"]["cluster"] == "cluster_stale"
                }
            )
            .await,
            "replica {i} not unready within stale_after + 1 s: {:?}",
            ready_status(fleet.replica(i)).await
        );
    }
    eprintln!("all replicas unready {:?} after SIGSTOP", paused.elapsed());
    for i in 0..3 {
        let h = health(fleet.replica(i)).await;
        assert_eq!(h["status"], "degraded");
        assert_eq!(h["checks"]["cluster"], "cluster_stale");
        // Validation keeps serving from the local copy.
        assert_eq!(status(fleet.replica(i), &token).await, 200);
    }

    fleet.redis.resume();
    let resumed = Instant::now();
    for i in 0..3 {
        assert!(
            eventually_async(
                Duration::from_secs(2),
                Duration::from_millis(25),
                || async { ready_status(fleet.replica(i)).await.0 == 200 }
            )
            .await,
            "replica {i} not ready within 2 s of SIGCONT"
        );
    }
    eprintln!(
        "all replicas ready again {:?} after SIGCONT",
        resumed.elapsed()
    );
    assert_eq!(health(fleet.replica(0)).await["status"], "ok");
}

#[tokio::test]
async fn a_standalone_gateway_opens_no_connection_to_redis() {
    let redis = RedisProc::start();
    let url = redis.url();
    let gw = TestGateway::start(|c, _| {
        // The URL is set, the mode is the default: nothing may connect.
        c.cluster.url = url.clone();
    })
    .await;
    let token = gw.token("alice", &[]);
    let sessions = Arc::clone(gw.running.sessions());
    let t = token.clone();
    tokio::task::spawn_blocking(move || {
        let s = sessions.authenticate(&t).unwrap();
        sessions.logout(&s).unwrap();
    })
    .await
    .unwrap();
    let _ = gw.client().get(gw.addr(), "/ready").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        list.lines().count(),
        1,
        "only the test's own client: {list}"
    );
    let text = gw.metrics_text().await;
    assert!(
        !text.contains("clawgate_cluster_"),
        "no cluster metric standalone"
    );
}

/// A TCP proxy in front of Redis for one replica: `cut(true)` makes it a
/// black hole (connections are accepted, nothing is forwarded either way,
/// as with SIGSTOP but for this replica only); `cut(false)` heals it (what
/// was held back is then delivered, as after SIGCONT).
struct FaultProxy {
    addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, _) = tokio::sync::watch::channel(true);
        let gate = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let gate = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, gate.clone()), pump(sr, cw, gate));
                });
            }
        });
        Self { addr, open, task }
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    fn cut(&self, cut: bool) {
        self.open.send_replace(!cut);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Read while open but the cut came meanwhile: held until healed.
        if gate.wait_for(|open| *open).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn resyncs(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("clawgate_cluster_resyncs_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_cut_off_replica_goes_unready_alone_and_catches_up_even_past_a_trimmed_stream() {
    let redis = RedisProc::start();
    let proxy = FaultProxy::start(redis.addr()).await;
    let via_proxy = proxy.url();
    let fleet = Fleet::start_with(redis, 3, move |c, i| {
        if i == 1 {
            c.cluster.url = via_proxy.clone();
        }
    })
    .await;
    let stale_after = fleet.replica(1).config.cluster.stale_after;
    assert!(
        eventually_async(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { ready_status(fleet.replica(1)).await.0 == 200 }
        )
        .await
    );
    let tokens: Vec<String> = (0..20)
        .map(|i| fleet.replica(0).token(&format!("cut{i}"), &[]))
        .collect();
    let (first, second) = tokens.split_at(10);

    // Black-hole replica 1 only: the fleet goes on without it.
    proxy.cut(true);
    let cut_at = Instant::now();
    for t in first {
        logout(fleet.replica(0).running.sessions(), t).await;
    }
    all_refused(&fleet, &[2], first, Duration::from_secs(1))
        .await
        .expect("replica 2 hears of replica 0's revocations while 1 is cut off");
    assert!(
        eventually_async(
            stale_after + Duration::from_secs(1) - cut_at.elapsed().min(stale_after),
            Duration::from_millis(25),
            || async { ready_status(fleet.replica(1)).await.0 == 503 }
        )
        .await,
        "the cut-off replica goes unready within stale_after + 1 s"
    );
    assert_eq!(
        ready_status(fleet.replica(2)).await.0,
        200,
        "the others stay ready"
    );
    assert!(
        !refused(fleet.replica(1), &first[0]),
        "cut off: not heard yet"
    );
    let gaps_before = resyncs(&fleet.replica(1).metrics_text().await, "gap");

    proxy.cut(false);
    let took = all_refused(&fleet, &[1], first, Duration::from_secs(2))
        .await
        .expect("the healed replica catches up");
    eprintln!("cut-off replica caught up {took:?} after healing");
    let text = fleet.replica(1).metrics_text().await;
    assert_eq!(
        resyncs(&text, "gap"),
        gaps_before,
        "no gap: the stream still held it all"
    );
    assert!(
        eventually_async(
            Duration::from_secs(2),
            Duration::from_millis(25),
            || async { ready_status(fleet.replica(1)).await.0 == 200 }
        )
        .await
    );

    // Cut off again, and the stream trimmed past its position meanwhile
    // (as `stream_retention` does to a replica away for longer).
    proxy.cut(true);
    for t in second {
        logout(fleet.replica(0).running.sessions(), t).await;
    }
    all_refused(&fleet, &[2], second, Duration::from_secs(1))
        .await
        .expect("replica 2 hears of them");
    let mut conn = fleet
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let trimmed: u64 = redis::cmd("XTRIM")
        .arg("{cg}:rev:log")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(trimmed >= 10, "trimmed {trimmed}");
    proxy.cut(false);
    all_refused(&fleet, &[1], second, Duration::from_secs(2))
        .await
        .expect("the snapshot brings what the stream lost");
    assert!(
        eventually_async(
            Duration::from_secs(2),
            Duration::from_millis(25),
            || async { resyncs(&fleet.replica(1).metrics_text().await, "gap") > gaps_before }
        )
        .await,
        "the trim past its position is seen as a gap"
    );
    for i in [0, 2] {
        let text = fleet.replica(i).metrics_text().await;
        assert_eq!(
            resyncs(&text, "gap"),
            0.0,
            "replica {i} had read everything trimmed"
        );
    }
}

#[tokio::test]
async fn concurrent_revocations_of_one_id_merge_to_the_widest_everywhere() {
    use clawgate::gateway::session_manager::revocation_store::Revocation;
    let fleet = Fleet::start(2).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let revoke = |i: usize, r: Revocation| {
        let store = Arc::clone(fleet.replica(i).running.sessions().store());
        tokio::task::spawn_blocking(move || store.revoke(r).unwrap())
    };
    // Neither dominates: the merge takes the later cut of one and the
    // later `until` of the other.
    revoke(0, Revocation::subject("bob", now - 100, now + 7_200))
        .await
        .unwrap();
    revoke(1, Revocation::subject("bob", now - 10, now + 3_600))
        .await
        .unwrap();
    let mut conn = fleet
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let want = (now - 10, now + 7_200);
    let stored = || {
        let mut conn = conn.clone();
        async move {
            let json: Option<String> = redis::cmd("HGET")
                .arg("{cg}:rev")
                .arg("u:bob")
                .query_async(&mut conn)
                .await
                .unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&json.unwrap_or_default()).unwrap_or(serde_json::Value::Null);
            (
                v["issued_before"].as_u64(),
                v["until"].as_u64(),
                v["kind"].clone(),
            )
        }
    };
    assert!(
        eventually_async(
            Duration::from_secs(2),
            Duration::from_millis(20),
            || async {
                let (cut, until, kind) = stored().await;
                (cut, until) == (Some(want.0), Some(want.1)) && kind == "subject"
            }
        )
        .await,
        "{{cg}}:rev u:bob = {:?}",
        stored().await
    );
    // Both replicas hold the union: a token issued at now - 50 is cut by
    // replica 1's revocation, which replica 0 learnt from the fleet.
    for i in 0..2 {
        let store = fleet.replica(i).running.sessions().store();
        assert!(
            eventually_async(
                Duration::from_secs(1),
                Duration::from_millis(10),
                || async { store.is_revoked("", "", "bob", now - 50) }
            )
            .await,
            "replica {i}"
        );
    }
    // A narrower revocation changes nothing and adds no stream entry.
    let len = || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("XLEN")
                .arg("{cg}:rev:log")
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let before = len().await;
    revoke(0, Revocation::subject("bob", now - 500, now + 60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(len().await, before);
    assert_eq!(stored().await.0, Some(want.0));
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
}
