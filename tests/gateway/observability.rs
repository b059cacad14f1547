//! Logs and metrics an operator can use (issue 13): the access log, plain
//! log fields, one client-address form, one start-up line per fact,
//! `pretty` without colours off a terminal, and the metrics (build info,
//! process, upstream, pairing, rate limits) with every label documented.
//!
//! Everything runs through the real gateway: a rustls client on loopback,
//! a real upstream on loopback, events captured as JSON by one
//! process-wide subscriber (each test finds its own events by a path or
//! port only it uses).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::logs::Logs;
use common::{TestGateway, authed, eventually, gateway_with_upstream, post_json};
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

/// This test's capture (`common::with_captured_logs`).
fn captured() -> Logs {
    common::captured_logs()
}

/// Every captured event, its fields at the top level.
fn events(logs: &Logs) -> Vec<Value> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|mut e| {
            if let Some(Value::Object(fields)) = e.get("fields").cloned() {
                for (k, v) in fields {
                    e[k] = v;
                }
            }
            e
        })
        .collect()
}

/// The access events for `path`.
fn access_events(path: &str) -> Vec<Value> {
    events(&captured())
        .into_iter()
        .filter(|e| e["event"] == "access" && e["path"] == path)
        .collect()
}

async fn wait_for_access(path: &str) -> Value {
    assert!(
        eventually(Duration::from_secs(5), || !access_events(path).is_empty()).await,
        "no access event for {path}:\n{}",
        captured().text()
    );
    access_events(path).remove(0)
}

/// The value of the sample `line_prefix` (`name{labels}`) in `text`.
fn sample(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn is_ip_port(s: &str) -> bool {
    s.parse::<std::net::SocketAddr>().is_ok()
}

#[test]
fn access_log_has_one_plain_event_per_proxied_request() {
    common::with_captured_logs(|| async {
        captured();
        let (gw, _, _) = gateway_with_upstream(|_, _| {}).await;
        let token = gw.token("alice", &["read"]);
        let client = gw.client();
        let response = client
            .send(
                gw.addr(),
                authed(
                    "GET",
                    "/obs/proxied?secret_query=hunter2",
                    &token,
                    Bytes::new(),
                ),
            )
            .await;
        assert_eq!(response.status, 200);

        let event = wait_for_access("/obs/proxied").await;
        assert_eq!(
            access_events("/obs/proxied").len(),
            1,
            "one event per request"
        );
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["target"], "clawgate::access");
        assert_eq!(event["method"], "GET");
        assert_eq!(event["status"], 200);
        assert_eq!(event["bytes"], response.body.len() as u64);
        assert!(event["duration_ms"].as_f64().unwrap() >= 0.0);
        let upstream_ms = event["upstream_ms"].as_f64().expect("upstream time");
        assert!(upstream_ms <= event["duration_ms"].as_f64().unwrap());
        assert_eq!(event["sub"], "alice");
        let sid = event["sid_prefix"].as_str().unwrap();
        assert_eq!(sid.len(), 8, "a short prefix of the session id: {sid}");
        assert!(is_ip_port(event["client"].as_str().unwrap()), "{event}");
        // The query string and the token never reach the log.
        let text = captured().text();
        assert!(!text.contains("hunter2"), "query string logged");
        assert!(!text.contains(&token), "token logged");
    });
}

#[test]
fn access_log_records_a_request_its_client_abandoned_as_499() {
    common::with_captured_logs(|| async {
        captured();
        let (gw, upstream, _) = gateway_with_upstream(|_, _| {}).await;
        let token = gw.token("alice", &["read"]);
        let tls = gw.client().connect(gw.addr()).await.unwrap();
        let request = authed("GET", "/delay?ms=30000", &token, Bytes::new());
        let pending = tokio::spawn(common::send_on(tls, request));
        // The upstream holds the request: the client gives up and closes.
        upstream.delay_started.notified().await;
        pending.abort();
        let _ = pending.await;

        let event = wait_for_access("/delay").await;
        assert_eq!(event["status"], 499, "{event}");
        assert_eq!(event["error"], "client_closed", "{event}");
        assert_eq!(event["sub"], "alice", "{event}");
        assert_eq!(event["bytes"], 0, "{event}");
        // Exactly once, although the answer never came.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(access_events("/delay").len(), 1);
    });
}

#[test]
fn access_log_records_local_answers_without_upstream_time() {
    common::with_captured_logs(|| async {
        captured();
        let gw = TestGateway::start(|_, _| {}).await;
        let response = gw.client().get(gw.addr(), "/obs/no-token").await;
        assert_eq!(response.status, 401);
        let event = wait_for_access("/obs/no-token").await;
        assert_eq!(event["status"], 401);
        assert_eq!(event["error"], "missing_token", "{event}");
        assert!(event.get("upstream_ms").is_none(), "not proxied: {event}");
        assert!(event.get("sub").is_none(), "no session: {event}");
        assert_eq!(event["bytes"], response.body.len() as u64);
    });
}

#[test]
fn rate_limit_refusals_are_logged_and_counted_by_route_and_reason() {
    common::with_captured_logs(|| async {
        captured();
        let gw = TestGateway::start(|c, _| c.auth.rate_limit_per_minute = 1).await;
        let client = gw.client();
        let body = json!({"username": "nobody", "password": "x"});
        let first = client
            .send(gw.addr(), post_json("/auth/login", &body))
            .await;
        assert_ne!(first.status, 429);
        let second = client
            .send(gw.addr(), post_json("/auth/login", &body))
            .await;
        assert_eq!(second.status, 429);

        // Other tests log in too: find this gateway's refusal by its client port.
        assert!(
            eventually(Duration::from_secs(5), || {
                access_events("/auth/login")
                    .iter()
                    .any(|e| e["status"] == 429 && e["error"] == "rate_limited")
            })
            .await,
            "the 429 was not logged:\n{}",
            captured().text()
        );
        let metrics = gw.metrics_text().await;
        assert_eq!(
            sample(
                &metrics,
                "clawgate_rate_limited_total{route=\"auth\",reason=\"rate_limited\"}"
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(
                &metrics,
                "clawgate_rate_limited_total{route=\"upstream\",reason=\"rate_limited\"}"
            ),
            Some(0.0)
        );
    });
}

#[test]
fn access_log_can_be_switched_off() {
    common::with_captured_logs(|| async {
        captured();
        let gw = TestGateway::start(|c, _| c.log.access_log = false).await;
        let client = gw.client();
        let response = client.get(gw.addr(), "/obs/quiet").await;
        assert_eq!(response.status, 401);
        // A request with the log on, made after, is logged: the subscriber is
        // live, so the missing event for the first one is the switch.
        let loud = TestGateway::start(|_, _| {}).await;
        let _ = loud.client().get(loud.addr(), "/obs/loud").await;
        wait_for_access("/obs/loud").await;
        assert!(access_events("/obs/quiet").is_empty());
    });
}

#[test]
fn upstream_latency_and_errors_by_kind_are_counted() {
    common::with_captured_logs(|| async {
        captured();
        let (gw, _, _) = gateway_with_upstream(|c, _| {
            c.upstream.response_timeout = Duration::from_millis(200);
        })
        .await;
        let token = gw.token("alice", &["read"]);
        let client = gw.client();
        let ok = client
            .send(gw.addr(), authed("GET", "/obs/ok", &token, Bytes::new()))
            .await;
        assert_eq!(ok.status, 200);
        let slow = client
            .send(gw.addr(), authed("GET", "/slow", &token, Bytes::new()))
            .await;
        assert_eq!(slow.status, 504);
        let metrics = gw.metrics_text().await;
        assert_eq!(
            sample(
                &metrics,
                "clawgate_upstream_response_duration_seconds_count"
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "clawgate_upstream_errors_total{kind=\"timeout\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&metrics, "clawgate_upstream_errors_total{kind=\"connect\"}"),
            Some(0.0)
        );

        // An upstream that is not listening: a connect error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let down =
            TestGateway::start(|c, _| c.upstream.url = Some(format!("http://{closed_addr}"))).await;
        let token = down.token("alice", &["read"]);
        let refused = down
            .client()
            .send(
                down.addr(),
                authed("GET", "/obs/down", &token, Bytes::new()),
            )
            .await;
        assert_eq!(refused.status, 502);
        let metrics = down.metrics_text().await;
        assert_eq!(
            sample(&metrics, "clawgate_upstream_errors_total{kind=\"connect\"}"),
            Some(1.0),
            "{metrics}"
        );
        let event = wait_for_access("/obs/down").await;
        assert_eq!(event["error"], "upstream_unavailable");
        assert!(event["upstream_ms"].as_f64().is_some());
    });
}

#[test]
fn pairing_failures_are_counted_by_reason() {
    common::with_captured_logs(|| async {
        captured();
        let gw = TestGateway::start(|_, _| {}).await;
        let client = gw.client();
        let wrong = Request::post("/auth/pair")
            .header("x-pairing-code", "not-the-code")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.send(gw.addr(), wrong).await.status, 401);
        let missing = Request::post("/auth/pair")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.send(gw.addr(), missing).await.status, 400);
        let right = Request::post("/auth/pair")
            .header("x-pairing-code", gw.pairing_code())
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.send(gw.addr(), right).await.status, 200);
        let again = Request::post("/auth/pair")
            .header("x-pairing-code", gw.pairing_code())
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.send(gw.addr(), again).await.status, 409);
        let metrics = gw.metrics_text().await;
        for (reason, count) in [
            ("invalid_code", 1.0),
            ("other", 1.0),
            ("used", 1.0),
            ("locked", 0.0),
        ] {
            assert_eq!(
                sample(
                    &metrics,
                    &format!("clawgate_pairing_failures_total{{reason=\"{reason}\"}}")
                ),
                Some(count),
                "{reason}: {metrics}"
            );
        }
    });
}

#[test]
fn build_info_and_process_metrics_are_exposed() {
    common::with_captured_logs(|| async {
        captured();
        let gw = TestGateway::start(|_, _| {}).await;
        let metrics = gw.metrics_text().await;
        let info = format!(
            "clawgate_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&metrics, &info), Some(1.0), "{metrics}");
        if cfg!(target_os = "linux") {
            let rss = sample(&metrics, "clawgate_process_resident_memory_bytes").unwrap();
            assert!(rss > 1_000_000.0, "RSS {rss}");
            // The gateway runs in this process: its figure is the kernel's
            // VmRSS (in KiB, whatever the page size), within the growth of
            // one scrape.
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let kib: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .unwrap()
                .parse()
                .unwrap();
            let ratio = rss / (kib * 1024.0);
            assert!((0.8..1.25).contains(&ratio), "RSS {rss} vs VmRSS {kib} KiB");
            // The listeners and this scrape's socket at least.
            let fds = sample(&metrics, "clawgate_process_open_fds").unwrap();
            assert!(fds >= 3.0, "fds {fds}");
            assert!(sample(&metrics, "clawgate_process_cpu_seconds_total").unwrap() >= 0.0);
        }
        for help in [
            "# HELP clawgate_build_info ",
            "# HELP clawgate_process_open_fds ",
            "# HELP clawgate_upstream_errors ",
            "# HELP clawgate_rate_limited ",
            "# HELP clawgate_pairing_failures ",
        ] {
            assert!(metrics.contains(help), "no help text {help}");
        }
    });
}

/// Walks `/metrics` after traffic of every kind and checks that every
/// metric name and every label value appears in docs/operations.md.
#[test]
fn every_metric_and_label_value_is_documented() {
    common::with_captured_logs(|| async {
        captured();
        let (gw, _, _) = gateway_with_upstream(|c, _| c.auth.rate_limit_per_minute = 2).await;
        let token = gw.token("alice", &["read"]);
        let client = gw.client();
        let _ = client
            .send(gw.addr(), authed("GET", "/obs/doc", &token, Bytes::new()))
            .await;
        let _ = client.get(gw.addr(), "/obs/doc-no-token").await;
        for _ in 0..3 {
            let wrong = Request::post("/auth/pair")
                .header("x-pairing-code", "wrong")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let _ = client.send(gw.addr(), wrong).await;
        }
        let metrics = gw.metrics_text().await;
        // Enough of the exposition to mean something: more than 15
        // metric families.
        let families = metrics
            .lines()
            .filter(|l| l.starts_with("# TYPE clawgate_"))
            .count();
        assert!(families > 15, "{metrics}");
        common::metrics_doc::assert_documented(&metrics, "clawgate_");
    });
}

/// No field in Rust's debug form, and one client form (`ip:port`) in every
/// event that names a client.
#[test]
fn log_fields_are_plain_values_and_clients_are_ip_port() {
    common::with_captured_logs(|| async {
        captured();
        // A fresh keys directory: the start logs the new signing key.
        let gw = TestGateway::start(|_, _| {}).await;
        let client = gw.client();
        let wrong = Request::post("/auth/pair")
            .header("x-pairing-code", "wrong")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let _ = client.send(gw.addr(), wrong).await;
        let _ = client
            .send(
                gw.addr(),
                authed("GET", "/obs/plain", "v4.public.bogus", Bytes::new()),
            )
            .await;
        wait_for_access("/obs/plain").await;
        assert!(
            eventually(Duration::from_secs(5), || {
                events(&captured())
                    .iter()
                    .any(|e| e["event"] == "pairing_failed")
            })
            .await
        );
        // The gateway's own events (dependencies' TRACE lines are theirs).
        let all: Vec<Value> = events(&captured())
            .into_iter()
            .filter(|e| {
                e["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("clawgate"))
            })
            .collect();
        assert!(all.iter().any(|e| e["event"] == "signing_key_changed"));
        for event in &all {
            let text = event.to_string();
            assert!(
                !text.contains("Some(") && !text.contains("\"None\""),
                "debug formatting in {text}"
            );
            if let Some(client) = event.get("client") {
                let client = client.as_str().unwrap();
                assert!(is_ip_port(client), "client not ip:port in {text}");
            }
        }
    });
}

/// Building and starting a gateway logs each fact once.
#[test]
fn start_up_logs_each_fact_once() {
    common::with_captured_logs(|| async {
        captured();
        let local = Logs::default();
        // Build and start run on this thread: a thread-local subscriber sees
        // exactly this gateway's start-up.
        let guard = tracing::subscriber::set_default(local.subscriber());
        let gw = TestGateway::start(|_, _| {}).await;
        drop(guard);
        let started = events(&local);
        let mut seen = BTreeSet::new();
        for event in &started {
            let name = event["event"].as_str();
            assert!(
                name.is_some(),
                "start-up event without an `event` name: {event}"
            );
            assert!(
                seen.insert(name.unwrap().to_owned()),
                "logged twice: {event}"
            );
            assert!(event["message"] != "revocation store loaded");
        }
        for expected in [
            "listening",
            "revocation_store_loaded",
            "signing_key_changed",
        ] {
            assert!(seen.contains(expected), "{expected} missing from {seen:?}");
        }
        drop(gw);
    });
}

/// `pretty` on a pipe: no ANSI escape codes.
#[test]
fn pretty_logs_have_no_colours_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n\
             [tls]\ncert_dir = {:?}\n[tokens]\nkeys_dir = {:?}\n[state]\ndir = {:?}\n\
             [log]\nformat = \"pretty\"\n",
            d.join("certs"),
            d.join("keys"),
            d.join("state"),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("HOME", d)
        .env_remove("RUST_LOG")
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.expect("serve logged no `listening` line");
    assert!(seen.contains("listening"), "{seen}");
    assert!(
        !seen.contains('\u{1b}'),
        "ANSI escape codes on a pipe: {seen:?}"
    );
}
