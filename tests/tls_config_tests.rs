//! The TLS policy against the real server on 127.0.0.1 with a real rustls
//! client: versions, suites, ALPN, headers on every response, limits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestClient, TestGateway, client_config, send_on, tool};
use http_body_util::Full;
use hyper::Request;
use rustls::crypto::ring::cipher_suite;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const HSTS: &str = "max-age=31536000; includeSubDomains";

async fn handshake_with(
    gw: &TestGateway,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(gw.addr()).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn each_allowed_suite_completes_a_tls13_handshake() {
    let gw = TestGateway::start(|_, _| {}).await;
    for suite in [
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let config = client_config(
            &gw.ca_path(),
            Some(vec![suite]),
            &[&rustls::version::TLS13],
            &[b"http/1.1"],
        );
        let tls = handshake_with(&gw, config).await.expect("handshake");
        let conn = tls.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(
            conn.negotiated_cipher_suite().map(|s| s.suite()),
            Some(suite.suite())
        );
        let resp = send_on(
            tls,
            Request::get("/health")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, 200);
    }
}

#[tokio::test]
async fn server_prefers_aes256_when_client_offers_everything() {
    let gw = TestGateway::start(|_, _| {}).await;
    let config = client_config(
        &gw.ca_path(),
        None,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[],
    );
    let tls = handshake_with(&gw, config).await.unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(suite, Some(CipherSuite::TLS13_AES_256_GCM_SHA384));
}

/// Exactly one handshake with `result` is in the gateway's metrics.
async fn assert_handshake_counted(gw: &TestGateway, result: &str) {
    let line = format!("clawgate_tls_handshakes_total{{result=\"{result}\"}} 1");
    let scraped = gw.metrics_with(&line).await;
    assert!(scraped.contains(&line), "{scraped}");
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    let gw = TestGateway::start(|_, _| {}).await;
    let config = client_config(&gw.ca_path(), None, &[&rustls::version::TLS12], &[]);
    let err = handshake_with(&gw, config)
        .await
        .expect_err("TLS 1.2 must fail");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    assert_handshake_counted(&gw, "protocol_version").await;
}

#[tokio::test]
async fn aes128_only_client_is_refused_with_a_named_reason() {
    let gw = TestGateway::start(|_, _| {}).await;
    let config = client_config(
        &gw.ca_path(),
        Some(vec![cipher_suite::TLS13_AES_128_GCM_SHA256]),
        &[&rustls::version::TLS13],
        &[],
    );
    let err = handshake_with(&gw, config)
        .await
        .expect_err("AES-128 only must fail");
    assert!(err.to_string().contains("HandshakeFailure"), "{err}");
    assert_handshake_counted(&gw, "no_cipher_suite").await;
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http11() {
    let gw = TestGateway::start(|_, _| {}).await;
    for (offer, expected) in [(&b"h2"[..], "h2"), (&b"http/1.1"[..], "http/1.1")] {
        let client = TestClient::with_alpn(&gw.ca_path(), &[offer]);
        let tls = client.connect(gw.addr()).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(expected.as_bytes()));
        let resp = send_on(
            tls,
            Request::get("/health")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, 200, "over {expected}");
        assert_eq!(resp.header("strict-transport-security"), Some(HSTS));
    }
}

#[tokio::test]
async fn hsts_and_security_headers_on_success_and_error_responses() {
    let gw = TestGateway::start(|c, _| c.server.max_body_bytes = 1024).await;
    let client = gw.client();
    let ok = client.get(gw.addr(), "/health").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["status"], "ok");
    let unauthenticated = client.get(gw.addr(), "/no/such/path").await;
    let wrong_method = client
        .send(
            gw.addr(),
            Request::post("/health")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    let too_large = client
        .send(
            gw.addr(),
            Request::post("/anything")
                .body(Full::new(Bytes::from(vec![b'x'; 4096])))
                .unwrap(),
        )
        .await;
    assert_eq!(
        unauthenticated.header("www-authenticate"),
        Some("Bearer"),
        "no credentials: bare challenge"
    );
    for (resp, status, code) in [
        (&unauthenticated, 401, "missing_token"),
        (&wrong_method, 405, "method_not_allowed"),
        (&too_large, 413, "payload_too_large"),
    ] {
        assert_eq!(resp.status, status);
        assert_eq!(resp.json()["error"], code, "{resp:?}");
    }
    for resp in [&ok, &unauthenticated, &wrong_method, &too_large] {
        assert_eq!(
            resp.header("strict-transport-security"),
            Some(HSTS),
            "{resp:?}"
        );
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    }
}

#[tokio::test]
async fn hsts_follows_config_including_max_age_zero() {
    let gw = TestGateway::start(|c, _| {
        c.hsts.max_age = 0;
        c.hsts.include_subdomains = false;
    })
    .await;
    let resp = gw.client().get(gw.addr(), "/health").await;
    assert_eq!(resp.header("strict-transport-security"), Some("max-age=0"));
}

#[tokio::test]
async fn oversized_header_is_answered_by_hyper_with_431() {
    // hyper answers this itself without calling the service, so the
    // response is bare (documented in docs/tls-session-security.md).
    let gw = TestGateway::start(|c, _| c.server.max_header_bytes = 8192).await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    let big = "a".repeat(20_000);
    let req = format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let _ = tls.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let gw =
        TestGateway::start(|c, _| c.server.header_read_timeout = Duration::from_millis(500)).await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    assert!(
        ended.is_ok(),
        "server kept a slow client open past the header timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn silent_client_is_dropped_at_the_handshake_timeout() {
    let gw =
        TestGateway::start(|c, _| c.server.handshake_timeout = Duration::from_millis(300)).await;
    // A TCP connection that never sends a ClientHello holds a slot only
    // until the handshake timeout.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        ended.is_ok(),
        "server kept a silent client past the handshake timeout"
    );
    assert!(
        buf.is_empty(),
        "nothing is sent before a ClientHello: {buf:?}"
    );
    assert_handshake_counted(&gw, "timeout").await;
}

#[tokio::test]
async fn built_config_disables_early_data_and_sets_alpn() {
    let gw = TestGateway::start(|_, _| {}).await;
    let config =
        clawgate::gateway::tls_config::server_config(gw.running.certificates().resolver(), None)
            .unwrap();
    assert_eq!(config.max_early_data_size, 0);
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[tokio::test]
async fn curl_and_openssl_agree_with_the_policy() {
    let gw = TestGateway::start(|_, _| {}).await;
    let url = format!("https://localhost:{}/health", gw.addr().port());
    let ca = gw.ca_path();
    if let Some(curl) = tool("curl") {
        let run = |extra: &[&str]| {
            let ca = ca.clone();
            let url = url.clone();
            let curl = curl.clone();
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            tokio::task::spawn_blocking(move || {
                Command::new(curl)
                    .args(["-sS", "-i", "--cacert"])
                    .arg(ca)
                    .args(extra)
                    .arg(url)
                    .output()
                    .unwrap()
            })
        };
        let ok = run(&[]).await.unwrap();
        let text = String::from_utf8_lossy(&ok.stdout).to_lowercase();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(
            text.contains("strict-transport-security: max-age=31536000; includesubdomains"),
            "{text}"
        );
        let tls12 = run(&["--tlsv1.2", "--tls-max", "1.2"]).await.unwrap();
        assert!(!tls12.status.success(), "curl over TLS 1.2 must fail");
    } else {
        eprintln!("curl not found: skipping the curl half");
    }
    if let Some(openssl) = tool("openssl") {
        let addr = format!("127.0.0.1:{}", gw.addr().port());
        let run = |args: Vec<String>| {
            let openssl = openssl.clone();
            tokio::task::spawn_blocking(move || {
                Command::new(openssl)
                    .args(["s_client", "-brief", "-connect"])
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap()
            })
        };
        let ok = run(vec![
            addr.clone(),
            "-tls1_3".into(),
            "-ciphersuites".into(),
            "TLS_CHACHA20_POLY1305_SHA256".into(),
        ])
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(
            text.contains("TLSv1.3") && text.contains("TLS_CHACHA20_POLY1305_SHA256"),
            "{text}"
        );
        let aes128 = run(vec![
            addr,
            "-tls1_3".into(),
            "-ciphersuites".into(),
            "TLS_AES_128_GCM_SHA256".into(),
        ])
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&aes128.stdout),
            String::from_utf8_lossy(&aes128.stderr)
        );
        assert!(
            !text.contains("Ciphersuite: TLS_AES_128_GCM_SHA256"),
            "{text}"
        );
        assert!(
            text.to_lowercase().contains("alert") || !aes128.status.success(),
            "{text}"
        );
    } else {
        eprintln!("openssl not found: skipping the s_client half");
    }
}

mod tls_config {
    mod mtls;
}
