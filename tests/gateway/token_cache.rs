//! The cache of verified session tokens (issue 12 item 1) through the real
//! HTTPS gateway and a real upstream on loopback: a cached token is served
//! without a second verification, yet a pruned key, a revocation, an
//! expiry (manual clock) or a missing binding proof refuses it on the next
//! request; a token that failed verification is never cached; with
//! `verified_cache_entries = 0` nothing is. Hits and misses are asserted on
//! `clawgate_token_cache_lookups_total`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clawgate::Config;
use clawgate::binding_client::BindingClient;
use clawgate::clock::{Clock, ManualClock};
use clawgate::config::BindingPolicy;
use clawgate::gateway::Gateway;
use clawgate::gateway::session_manager::IssueMethod;
use clawgate::gateway::session_manager::verified_cache::VerifiedCache;
use clawgate::gateway::session_token::keyring::{self, KeyRing};
use clawgate::gateway::session_token::{self, Confirmation, TokenDraft, TokenPolicy};
use common::{TestGateway, TestResponse, authed, upstream};
use http_body_util::Full;
use hyper::Request;

const HOUR: Duration = Duration::from_secs(3600);

/// A gateway on `clock`, forwarding to a fresh echo upstream.
async fn start(
    clock: &Arc<ManualClock>,
    tweak: impl FnOnce(&mut Config, &Path),
) -> (TestGateway, upstream::Upstream) {
    let (upstream_addr, upstream) = upstream::spawn_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(dir.path(), |c, dir| {
        c.upstream.url = Some(format!("http://{upstream_addr}"));
        tweak(c, dir);
    });
    let running = Gateway::build_with_clock(config.clone(), clock.clone())
        .unwrap()
        .start()
        .await
        .unwrap();
    let gw = TestGateway {
        running,
        dir,
        config,
    };
    (gw, upstream)
}

fn cache(gw: &TestGateway) -> &VerifiedCache {
    gw.running.sessions().verified_cache()
}

async fn get(gw: &TestGateway, token: &str) -> TestResponse {
    gw.client()
        .send(gw.addr(), authed("GET", "/echo", token, ""))
        .await
}

fn assert_ok(resp: &TestResponse) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["uri"], "/echo", "{resp:?}");
}

fn assert_refused(resp: &TestResponse, code: &str) {
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(resp.json()["error"], code, "{resp:?}");
}

/// `(hits, misses)` as the metrics listener reports them.
async fn lookups(gw: &TestGateway) -> (u64, u64) {
    let text = gw.metrics_text().await;
    let value = |result: &str| {
        let name = format!("clawgate_token_cache_lookups_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    (value("hit"), value("miss"))
}

fn issue(gw: &TestGateway, ttl: Option<Duration>) -> String {
    let pair = gw
        .running
        .sessions()
        .issue("alice", vec!["read".to_owned()], ttl, IssueMethod::Cli)
        .unwrap();
    pair.session_token().to_owned()
}

#[tokio::test]
async fn a_token_is_verified_once_then_served_from_the_cache() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |_, _| {}).await;
    let token = issue(&gw, None);
    assert!(cache(&gw).is_enabled(), "on by default");
    for _ in 0..3 {
        assert_ok(&get(&gw, &token).await);
    }
    assert!(cache(&gw).contains(&token));
    assert_eq!(cache(&gw).len(), 1);
    assert_eq!(lookups(&gw).await, (2, 1));
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_pruned_keys_cached_tokens_are_refused_at_once() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |_, _| {}).await;
    let keys = gw.config.tokens.keys_dir.clone();
    let ring = gw.running.sessions().keyring();
    let old = issue(&gw, None);
    assert_ok(&get(&gw, &old).await);
    // Rotation retires the old key: it still verifies, its token still hits.
    clock.advance(Duration::from_secs(10));
    keyring::rotate(&keys, clock.now()).unwrap();
    assert!(ring.reload().removed.is_empty());
    let new = issue(&gw, None);
    assert_ok(&get(&gw, &new).await);
    assert_ok(&get(&gw, &old).await);
    assert_ok(&get(&gw, &new).await);
    assert_eq!(lookups(&gw).await, (2, 2));
    assert!(cache(&gw).contains(&old));
    // Pruned, and the ring reloads (what the directory watcher does on its
    // next poll): the old key's cached token is refused on its very next
    // request, though its entry was a valid hit a moment ago.
    clock.advance(Duration::from_secs(10));
    let pruned = keyring::prune(&keys, Duration::ZERO, clock.now()).unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(ring.reload().removed.len(), 1);
    assert_refused(&get(&gw, &old).await, "invalid_token");
    assert!(!cache(&gw).contains(&old), "the stale entry is dropped");
    assert_refused(&get(&gw, &old).await, "invalid_token");
    // The surviving key's token: verified again once, then cached again.
    assert_ok(&get(&gw, &new).await);
    assert_ok(&get(&gw, &new).await);
    assert_eq!(lookups(&gw).await, (3, 5));
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_the_next_request_although_cached() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |_, _| {}).await;
    let token = issue(&gw, None);
    let other = issue(&gw, None);
    assert_ok(&get(&gw, &token).await);
    assert_ok(&get(&gw, &other).await);
    let sessions = gw.running.sessions();
    let session = sessions.authenticate(&token).unwrap();
    sessions.logout(&session).unwrap();
    assert_refused(&get(&gw, &token).await, "invalid_token");
    assert_refused(&get(&gw, &token).await, "invalid_token");
    // It was a cache hit each time (the entry stays: revocation is checked
    // after the cache, on every request), and still refused.
    assert!(cache(&gw).contains(&token));
    assert_eq!(lookups(&gw).await, (3, 2));
    // The other session is untouched.
    assert_ok(&get(&gw, &other).await);
    gw.running.shutdown().await;
}

/// `GET /auth/session`: authenticated by the same bearer layer, answered
/// by the gateway itself (the proxy also ends a session at its `exp`, so
/// an upstream request would not show the token check's own leeway).
async fn session_info(gw: &TestGateway, token: &str) -> TestResponse {
    gw.client()
        .send(gw.addr(), authed("GET", "/auth/session", token, ""))
        .await
}

#[tokio::test]
async fn an_expired_cached_token_is_refused() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |_, _| {}).await;
    let leeway = gw.config.tokens.leeway;
    let token = issue(&gw, Some(Duration::from_secs(60)));
    assert_ok(&get(&gw, &token).await);
    // One second before exp + leeway: still accepted, from the cache.
    clock.advance(Duration::from_secs(60) + leeway - Duration::from_secs(1));
    let resp = session_info(&gw, &token).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(lookups(&gw).await, (1, 1));
    // At exp + leeway on the gateway's clock (moka's own clock has not
    // moved): the hit is refused, the full check says expired.
    clock.advance(Duration::from_secs(1));
    assert_refused(&session_info(&gw, &token).await, "invalid_token");
    assert!(!cache(&gw).contains(&token));
    assert_refused(&get(&gw, &token).await, "invalid_token");
    assert_eq!(lookups(&gw).await, (1, 3));
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_bound_token_without_its_proof_is_refused_although_cached() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |c, _| c.auth.binding = BindingPolicy::Optional).await;
    let client = BindingClient::generate().unwrap();
    let cnf = Confirmation {
        kpid: Some(client.key().kpid().to_owned()),
        x5t_s256: None,
    };
    let pair = gw
        .running
        .sessions()
        .issue_bound_at(
            "alice",
            vec![],
            None,
            IssueMethod::Cli,
            Some(cnf),
            clock.now(),
        )
        .unwrap();
    let token = pair.session_token().to_owned();
    let signed = || {
        let mut req = Request::get("/echo").body(Full::new(Bytes::new())).unwrap();
        client.attach_at(&mut req, &token, clock.now()).unwrap();
        req
    };
    let resp = gw.client().send(gw.addr(), signed()).await;
    assert_ok(&resp);
    assert!(cache(&gw).contains(&token));
    // Cached, but the proof is still required on every request.
    assert_refused(&get(&gw, &token).await, "proof_missing");
    assert_refused(&get(&gw, &token).await, "proof_missing");
    assert_eq!(lookups(&gw).await, (2, 1));
    let resp = gw.client().send(gw.addr(), signed()).await;
    assert_ok(&resp);
    assert_eq!(lookups(&gw).await, (3, 1));
    gw.running.shutdown().await;
}

#[tokio::test]
async fn the_cache_never_holds_a_token_that_failed_verification() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |_, _| {}).await;
    let good = issue(&gw, None);
    // A signature byte changed: same claims, same kid.
    let mut bytes = good.clone().into_bytes();
    let i = good.rfind('.').unwrap() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    // Same issuer and audience, a key the gateway does not have.
    let t = &gw.config.tokens;
    let policy = TokenPolicy::new(&t.issuer, &t.audience, t.leeway);
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = KeyRing::open_or_init_at(foreign_dir.path().join("keys"), clock.now()).unwrap();
    let draft = || TokenDraft::session("alice", HOUR);
    let unknown_kid = session_token::mint_at(&foreign, &policy, draft(), clock.now())
        .unwrap()
        .expose()
        .to_owned();
    // The gateway's own key, but expired two hours ago.
    let own = KeyRing::open(&t.keys_dir).unwrap();
    let expired = session_token::mint_at(&own, &policy, draft(), clock.now() - 3 * HOUR)
        .unwrap()
        .expose()
        .to_owned();
    let garbage = "v4.public.bm90LWEtdG9rZW4".to_owned();
    for token in [&forged, &unknown_kid, &expired, &garbage] {
        for _ in 0..2 {
            assert_refused(&get(&gw, token).await, "invalid_token");
            assert!(!cache(&gw).contains(token));
        }
    }
    assert_eq!(cache(&gw).len(), 0);
    assert_eq!(lookups(&gw).await, (0, 8));
    // The genuine token, by contrast, is cached.
    assert_ok(&get(&gw, &good).await);
    assert!(cache(&gw).contains(&good));
    assert_eq!(cache(&gw).len(), 1);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn with_zero_entries_nothing_is_cached() {
    let clock = Arc::new(ManualClock::starting_now());
    let (gw, _up) = start(&clock, |c, _| c.tokens.verified_cache_entries = 0).await;
    assert!(!cache(&gw).is_enabled());
    let token = issue(&gw, None);
    for _ in 0..3 {
        assert_ok(&get(&gw, &token).await);
    }
    assert!(!cache(&gw).contains(&token));
    assert_eq!(cache(&gw).len(), 0);
    assert_eq!(lookups(&gw).await, (0, 0));
    gw.running.shutdown().await;
}

#[test]
fn the_cache_size_is_bounded_by_the_config_rules() {
    let parse = |n: u64| Config::from_toml(&format!("[tokens]\nverified_cache_entries = {n}\n"));
    assert_eq!(Config::default().tokens.verified_cache_entries, 10_000);
    assert_eq!(parse(0).unwrap().tokens.verified_cache_entries, 0);
    assert_eq!(
        parse(1_000_000).unwrap().tokens.verified_cache_entries,
        1_000_000
    );
    let error = parse(1_000_001).unwrap_err().to_string();
    assert!(error.contains("verified_cache_entries"), "{error}");
    // `config check` and `serve` run the same preflight.
    let mut config = Config::default();
    config.tokens.verified_cache_entries = 1_000_001;
    let clock = ManualClock::starting_now();
    let error = Gateway::preflight(&config, &clock).unwrap_err().to_string();
    assert!(error.contains("verified_cache_entries"), "{error}");
    // The shipped default file names the key with its default.
    assert!(
        clawgate::config::DEFAULT_CONFIG_TOML.contains("verified_cache_entries = 10000"),
        "default.toml"
    );
}
