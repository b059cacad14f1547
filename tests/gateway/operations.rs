//! What an operator installs and runs: completions, the man page, the
//! licence, the minimum Rust version and the systemd unit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use std::path::Path;
use std::process::{Command, Output};

fn clawgate(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(args)
        .env("HOME", home)
        .current_dir(home)
        .output()
        .unwrap()
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn completions_are_printed_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_clawgate()"),
        ("zsh", "#compdef clawgate"),
        ("fish", "complete -c clawgate"),
    ] {
        let out = clawgate(&["completions", shell], home.path());
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("serve"), "{shell}: subcommands are completed");
    }
    let bad = clawgate(&["completions", "cmd.exe"], home.path());
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn man_page_is_roff_naming_the_commands() {
    let home = tempfile::tempdir().unwrap();
    let out = clawgate(&["man"], home.path());
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH clawgate 1"), "{page}");
    assert!(page.contains("serve"), "{page}");
}

#[test]
fn license_file_matches_the_manifest_and_rust_version_is_the_locked_minimum() {
    let manifest = repo_file("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = repo_file("LICENSE");
    assert!(license.contains("Apache License"));
    assert!(license.contains("Version 2.0, January 2004"));
    // pasetors 0.8.1 (in Cargo.lock) declares rust-version 1.88.
    assert!(repo_file("Cargo.lock").contains("name = \"pasetors\"\nversion = \"0.8.1\""));
    assert!(manifest.contains("rust-version = \"1.88\""));
    assert!(repo_file("README.md").contains("cargo install --path . --locked"));
}

#[test]
fn systemd_unit_is_hardened_and_checked_in_ci() {
    let unit = repo_file("contrib/clawgate.service");
    for line in [
        "User=clawgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "StateDirectory=clawgate",
        "ReadWritePaths=/var/lib/clawgate",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=64",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    assert!(repo_file(".ci/run").contains("bash .ci/systemd-verify"));
    assert!(repo_file(".ci/systemd-verify").contains("systemd-analyze verify"));
}

use crate::common;

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400_and_tls_still_works() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let gw = common::TestGateway::start(|_, _| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(body.contains("use https://"), "{body}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "the declared length is the body's");
    assert!(
        gw.metrics_text()
            .await
            .contains("clawgate_tls_handshakes_total{result=\"plaintext_http\"} 1")
    );
    // The check peeks: a TLS client's first byte still reaches rustls.
    assert_eq!(gw.client().get(gw.addr(), "/health").await.status, 200);
}

/// Polls `/ready` until it answers `status` (the probe runs every 2 s in
/// the background); returns the last body, or `None` if it never did.
async fn ready_becomes(
    client: &common::TestClient,
    addr: std::net::SocketAddr,
    status: u16,
) -> Result<serde_json::Value, serde_json::Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let resp = client.get(addr, "/ready").await;
        if resp.status == status {
            return Ok(resp.json());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(resp.json());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_is_503_while_the_upstream_is_unreachable_and_health_stays_ok() {
    // A port that was free: nothing listens there until the test binds it.
    let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = spare.local_addr().unwrap();
    drop(spare);
    let gw = common::TestGateway::start(|c, _| {
        c.upstream.url = Some(format!("http://{upstream}"));
    })
    .await;
    let client = gw.client();
    let down = ready_becomes(&client, gw.addr(), 503).await.unwrap();
    assert_eq!(down["status"], "not_ready");
    assert!(
        ["upstream_unreachable", "upstream_not_checked_yet"]
            .contains(&down["checks"]["upstream"].as_str().unwrap()),
        "{down}"
    );
    let health = client.get(gw.addr(), "/health").await;
    assert_eq!(health.status, 200, "/health is liveness only");
    assert_eq!(health.json()["status"], "ok");

    // The upstream comes up: the background probe notices, /ready is 200.
    let listener = tokio::net::TcpListener::bind(upstream).await.unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "up" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let up = ready_becomes(&client, gw.addr(), 200).await;
    assert_eq!(up.unwrap()["status"], "ready");
}

#[tokio::test]
async fn ready_is_200_without_an_upstream() {
    let gw = common::TestGateway::start(|_, _| {}).await;
    let resp = gw.client().get(gw.addr(), "/ready").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["status"], "ready");
}
