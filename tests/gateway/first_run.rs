//! A new user's first run, with the real binary: where the keys go,
//! errors that name the key and the fix, exit statuses, and
//! `serve --upstream` with no config file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn clawgate_in(args: &[&str], home: &Path, cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(args)
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn clawgate(args: &[&str], home: &Path) -> Output {
    clawgate_in(args, home, home)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Kills the gateway if a test fails before stopping it.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` with `args` and reads its banner up to the pairing
/// code (printed after the address, the certificate and the root).
fn serve(args: &[&str], home: &Path, cwd: &Path) -> (Serving, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["serve", "--banner", "text"])
        .args(args)
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        let last = line.starts_with("pairing code: ");
        lines.push(line);
        if last {
            break;
        }
    }
    (Serving(child), lines)
}

fn value<'a>(banner: &'a [String], prefix: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {banner:?}"))
}

/// Stops the gateway and returns what it wrote on stderr.
fn stop(serving: Serving) -> String {
    let mut serving = serving;
    let _ = serving.0.kill();
    let mut err = String::new();
    if let Some(mut e) = serving.0.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).unwrap();
    }
    err
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "key"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_usage_error_exits_64_and_help_and_version_succeed() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["frobnicate"][..],
        &["serve", "--no-such-flag"],
        &["token", "issue"],
        &[],
    ] {
        let out = clawgate(args, home.path());
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
    }
    for args in [&["--help"][..], &["--version"], &["serve", "--help"]] {
        let out = clawgate(args, home.path());
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn config_errors_name_the_key_and_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    let cases = [
        (
            "[server]\nlisten = \"localhost:8443\"\n",
            &[
                "[server] listen",
                "\"localhost:8443\"",
                "use an IP address and a port",
            ][..],
        ),
        (
            "[metrics]\nlisten = \"metrics.local:1\"\n",
            &["[metrics] listen", "use an IP address and a port"],
        ),
        (
            "[tokens]\nsession_ttl = 3600\n",
            &["[tokens] session_ttl", "use a string like \"3600s\""],
        ),
    ];
    for (text, fragments) in cases {
        let cfg = d.join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = clawgate(&["config", "check", cfg.to_str().unwrap()], d);
        assert_eq!(out.status.code(), Some(64), "{text}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        for f in fragments {
            assert!(err.contains(f), "{f} not in {err}");
        }
    }
    // The same rule for the command-line flag.
    let out = clawgate(&["serve", "--listen", "localhost:8443"], d);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("use an IP address and a port"),
        "{}",
        stderr(&out)
    );
    assert!(
        !d.join(".zeroclaw").exists(),
        "a refused start creates nothing"
    );
}

#[test]
fn missing_files_are_config_errors_naming_the_key_and_the_path() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    let cert = d.join("none.pem");
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ncert_path = {cert:?}\nkey_path = {:?}\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [metrics]\nenabled = false\n",
            d.join("none.key")
        ),
    )
    .unwrap();
    let check = clawgate(&["config", "check", cfg.to_str().unwrap()], d);
    let serve = clawgate(&["serve", "--config", cfg.to_str().unwrap()], d);
    for out in [&check, &serve] {
        assert_eq!(out.status.code(), Some(64), "{}", stderr(out));
        let err = stderr(out);
        assert!(err.contains("[tls] cert_path"), "{err}");
        assert!(err.contains(&cert.display().to_string()), "{err}");
        assert!(err.contains("[tls] key_path"), "{err}");
    }
    assert_eq!(stderr(&check), stderr(&serve), "one message for both");

    let missing = d.join("missing.toml");
    let out = clawgate(&["config", "check", missing.to_str().unwrap()], d);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "OS error once: {err}");
}

#[test]
fn a_taken_port_names_the_config_key_and_the_os_error_once() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    for (section, text) in [
        (
            "[server] listen",
            format!("[server]\nlisten = \"{port}\"\n[metrics]\nenabled = false\n"),
        ),
        (
            "[metrics] listen",
            format!("[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"{port}\"\n"),
        ),
    ] {
        let cfg = d.join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = clawgate(&["serve", "--config", cfg.to_str().unwrap()], d);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(section), "{err}");
        assert!(err.contains(&format!("cannot listen on {port}")), "{err}");
        assert!(err.contains("another process"), "the fix: {err}");
        assert_eq!(err.matches("os error").count(), 1, "OS error once: {err}");
    }
}

#[test]
fn the_metrics_listener_defaults_off_prometheus_port() {
    let home = tempfile::tempdir().unwrap();
    let init = stdout(&clawgate(&["config", "init"], home.path()));
    assert!(init.contains("listen = \"127.0.0.1:8444\""), "{init}");
    assert!(!init.contains("9090"), "{init}");
    let config = clawgate::Config::from_toml("").unwrap();
    assert_eq!(config.metrics.listen.port(), 8444);
}

#[cfg(unix)]
#[test]
fn keys_default_to_the_home_directory_not_the_working_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = clawgate_in(&["keys", "generate"], home.path(), elsewhere.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = home.path().join(".zeroclaw").join("keys");
    assert_eq!(key_files(&keys).len(), 1, "{}", stdout(&out));
    assert_eq!(mode(&keys), 0o700);
    assert!(!elsewhere.path().join("keys").exists());
}

#[test]
fn a_relative_keys_dir_is_taken_from_the_config_files_directory() {
    let home = tempfile::tempdir().unwrap();
    let conf = home.path().join("etc");
    let cwd = home.path().join("cwd");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let cfg = conf.join("gateway.toml");
    std::fs::write(&cfg, "[tokens]\nkeys_dir = \"my-keys\"\n").unwrap();
    let out = clawgate_in(
        &["keys", "generate", "--config", cfg.to_str().unwrap()],
        home.path(),
        &cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(key_files(&conf.join("my-keys")).len(), 1);
    assert!(!cwd.join("my-keys").exists(), "never the working directory");
}

#[test]
fn serve_with_upstream_and_listen_flags_needs_no_config_file() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (upstream, _state) = rt.block_on(common::upstream::spawn_upstream());
    let url = format!("http://{upstream}");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = free.local_addr().unwrap();
    drop(free);
    let (serving, banner) = serve(
        &["--upstream", &url, "--listen", &listen.to_string()],
        home.path(),
        cwd.path(),
    );
    assert_eq!(value(&banner, "clawgate "), env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&banner, "config: "), "defaults");
    assert_eq!(value(&banner, "upstream: "), url);
    let keys = home.path().join(".zeroclaw").join("keys");
    assert_eq!(PathBuf::from(value(&banner, "keys: ")), keys);
    assert_eq!(value(&banner, "cluster: "), "standalone");
    let addr: SocketAddr = value(&banner, "clawgate listening on https://")
        .parse()
        .unwrap();
    assert_eq!(addr, listen, "--listen is used");
    let root = PathBuf::from(value(&banner, "trust this root once: "));
    let code = value(&banner, "pairing code: ").to_owned();
    let status = rt.block_on(async {
        let client = common::TestClient::trusting(&root);
        let pair = http::Request::post("/auth/pair")
            .header("x-pairing-code", code)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let paired = client.send(addr, pair).await;
        assert_eq!(
            paired.status,
            200,
            "{}",
            String::from_utf8_lossy(&paired.body)
        );
        let token = paired.json()["session_token"].as_str().unwrap().to_owned();
        let req = common::authed("GET", "/hello", &token, "");
        client.send(addr, req).await.status
    });
    assert_eq!(status, 200, "the flag's upstream serves the request");
    let logs = stop(serving);
    // A new signing key was made: said at WARN with where it is.
    let created = logs
        .lines()
        .find(|l| l.contains("signing_key_created"))
        .unwrap_or_else(|| panic!("no WARN for the new key: {logs}"));
    assert!(created.contains("\"WARN\""), "{created}");
    assert!(created.contains(&keys.display().to_string()), "{created}");
    assert!(!cwd.path().join("keys").exists());
}

/// Offers `code` at `/auth/pair`; the status.
async fn pair(client: &common::TestClient, addr: SocketAddr, code: &str) -> u16 {
    let req = http::Request::post("/auth/pair")
        .header("x-pairing-code", code)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    client.send(addr, req).await.status
}

#[cfg(unix)]
#[tokio::test]
async fn off_a_terminal_stdout_is_json_without_the_code_and_clawgate_pairing_makes_a_new_one() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join(".zeroclaw").join("gateway-state");
    // The default config file, found without --config; metrics off, as the
    // default metrics port belongs to the no-config test.
    let cfg = home.path().join(".zeroclaw").join("gateway.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "[metrics]\nenabled = false\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env_remove("RUST_LOG")
        .current_dir(home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let serving = Serving(child);
    // stdout is a pipe, so `auto` means JSON lines only: the first is `ready`.
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(ready["event"], "ready", "{first}");
    assert_eq!(ready["config"], cfg.display().to_string());
    let file = PathBuf::from(ready["pairing_code_file"].as_str().unwrap());
    assert_eq!(file, state.join("pairing-code"));
    assert_eq!(mode(&file), 0o600);
    let code = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(!first.contains(&code), "no line carries the code");
    let addr: SocketAddr = ready["listen"]
        .as_str()
        .unwrap()
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let client = common::TestClient::trusting(Path::new(ready["root"].as_str().unwrap()));
    assert_eq!(
        pair(&client, addr, &code).await,
        200,
        "the file's code pairs"
    );
    assert_ne!(pair(&client, addr, &code).await, 200, "once");

    // A fresh code without a restart.
    let fresh = clawgate(&["pairing"], home.path());
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let printed = stdout(&fresh);
    let new_code = printed
        .lines()
        .find_map(|l| l.strip_prefix("pairing code: "))
        .unwrap()
        .to_owned();
    assert_ne!(new_code, code);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut status = 0;
    while tokio::time::Instant::now() < deadline {
        // A wrong code costs one attempt of five: wait for the file to be
        // read rather than guessing early.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        status = pair(&client, addr, &new_code).await;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "the running gateway took the new code");

    let logs = stop(serving);
    let rest = {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        rest
    };
    for line in first.lines().chain(rest.lines()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(
        logs.contains(&file.display().to_string()),
        "the log names the file: {logs}"
    );
    for secret in [&code, &new_code] {
        assert!(!logs.contains(secret.as_str()), "a code in the log");
        assert!(!rest.contains(secret.as_str()), "a code on stdout");
    }
}

/// The README's key-bound session example, with the config it names.
#[tokio::test]
async fn readme_key_bound_session_needs_binding_optional_and_a_copied_token_is_refused() {
    use std::io::Write as _;
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n[auth]\nbinding = \"optional\"\n",
    )
    .unwrap();
    let (serving, banner) = serve(
        &["--config", cfg.to_str().unwrap()],
        home.path(),
        home.path(),
    );
    let addr: SocketAddr = value(&banner, "clawgate listening on https://")
        .parse()
        .unwrap();
    let ca = value(&banner, "trust this root once: ").to_owned();
    let code = value(&banner, "pairing code: ").to_owned();
    let base = format!("https://localhost:{}", addr.port());

    let home_path = home.path().to_owned();
    let (paired, session) = tokio::task::spawn_blocking(move || {
        let mut pair = Command::new(env!("CARGO_BIN_EXE_clawgate"))
            .args(["request", "pair", &base, "--cacert", &ca])
            .env("HOME", &home_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(pair.stdin.take().unwrap(), "{code}").unwrap();
        let paired = pair.wait_with_output().unwrap();
        let session = clawgate(
            &["request", "GET", &format!("{base}/auth/session"), "-i"],
            &home_path,
        );
        (paired, session)
    })
    .await
    .unwrap();
    assert!(paired.status.success(), "{}", stderr(&paired));
    assert!(session.status.success(), "{}", stderr(&session));
    let shown = stdout(&session);
    assert!(shown.contains("200"), "{shown}");
    assert!(
        shown.contains("k4.pid."),
        "the session is key-bound: {shown}"
    );

    // The token copied out of the client's state, sent like plain curl.
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.path().join(".zeroclaw/client/session.json")).unwrap(),
    )
    .unwrap();
    let token = saved["session_token"].as_str().unwrap();
    let client = common::TestClient::trusting(Path::new(value(&banner, "trust this root once: ")));
    let copied = client
        .send(addr, common::authed("GET", "/auth/session", token, ""))
        .await;
    assert_eq!(
        copied.status, 401,
        "a copied token is useless without the key"
    );
    drop(serving);
}

/// Runs curl with `args`; `None` when curl is not installed.
fn curl(args: &[&str]) -> Option<Output> {
    let curl = common::tool("curl")?;
    Some(
        Command::new(curl)
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap(),
    )
}

/// Runs curl with `args` and only the status code on stdout.
fn curl_code(args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "/dev/null", "-w", "%{http_code}"]);
    curl(&all).unwrap()
}

/// The README's walk-through, command by command, with the real binary and
/// the real curl (skipped when curl is missing). Two departures, both
/// forced by a shared test machine: the gateway listens on a free port
/// (not 8443) with metrics off, and the upstream is in the config file from
/// the start instead of after a restart.
#[test]
fn readme_walk_through_with_curl() {
    if common::tool("curl").is_none() {
        eprintln!("curl not installed: README walk-through not run");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (upstream, _state) = rt.block_on(common::upstream::spawn_upstream());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let dot = home.path().join(".zeroclaw");
    std::fs::create_dir_all(&dot).unwrap();
    std::fs::write(
        dot.join("gateway.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nenabled = false\n\
             [upstream]\nurl = \"http://{upstream}\"\n"
        ),
    )
    .unwrap();
    let (serving, banner) = serve(&[], home.path(), home.path());
    let ca = value(&banner, "trust this root once: ").to_owned();
    assert_eq!(PathBuf::from(&ca), dot.join("certs").join("ca.crt"));
    let code = value(&banner, "pairing code: ").to_owned();
    let base = format!("https://localhost:{port}");
    let url = |path: &str| format!("{base}{path}");
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    // curl --cacert $CA https://localhost:8443/health -i
    let health = curl(&["--cacert", &ca, &url("/health"), "-i"]).unwrap();
    let out = text(&health).to_ascii_lowercase();
    assert!(out.starts_with("http/2 200"), "{out}");
    assert!(
        out.contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "{out}"
    );
    assert!(out.contains(r#"{"status":"ok"}"#), "{out}");

    // TLS 1.2 is refused: curl exits 35 (handshake failure).
    let old = curl(&[
        "--cacert",
        &ca,
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        &url("/health"),
    ])
    .unwrap();
    assert_eq!(old.status.code(), Some(35), "{}", stderr(&old));

    // Exchange the pairing code for tokens.
    let header = format!("X-Pairing-Code: {code}");
    let paired = curl(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-H",
        &header,
        &url("/auth/pair"),
    ])
    .unwrap();
    let tokens: serde_json::Value = serde_json::from_slice(&paired.stdout).unwrap();
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    // 24 h, less the part of a second already gone.
    let expires_in = tokens["expires_in"].as_u64().unwrap();
    assert!((86_399..=86_400).contains(&expires_in), "{expires_in}");
    let token = tokens["session_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("v4.public."));
    assert!(
        tokens["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("v4.public.")
    );
    // The code works once; `clawgate pairing` makes another, accepted within 2 s.
    let again = curl_code(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-H",
        &header,
        &url("/auth/pair"),
    ]);
    assert_ne!(text(&again), "200", "a pairing code worked twice");
    let fresh = clawgate(&["pairing"], home.path());
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let fresh_code = stdout(&fresh)
        .lines()
        .find_map(|l| l.strip_prefix("pairing code: "))
        .unwrap()
        .to_owned();
    let fresh_header = format!("X-Pairing-Code: {fresh_code}");
    // Wrong codes count against this client (5 before a lockout), so ask
    // only after the gateway had time to read the file (every second).
    let mut accepted = false;
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(700));
        let status = curl_code(&[
            "--cacert",
            &ca,
            "-X",
            "POST",
            "-H",
            &fresh_header,
            &url("/auth/pair"),
        ]);
        if text(&status) == "200" {
            accepted = true;
            break;
        }
    }
    assert!(
        accepted,
        "the code from `clawgate pairing` was not accepted"
    );

    let bearer = format!("Authorization: Bearer {token}");
    let session = curl(&["--cacert", &ca, "-H", &bearer, &url("/auth/session")]).unwrap();
    let session: serde_json::Value = serde_json::from_slice(&session.stdout).unwrap();
    assert!(session["sub"].is_string(), "{session}");
    let keys = curl(&["--cacert", &ca, &url("/.well-known/paseto-keys")]).unwrap();
    assert!(text(&keys).contains("k4.public."), "{}", text(&keys));

    // Through to the service behind it; unsafe methods with replay headers.
    let proxied = curl_code(&["--cacert", &ca, "-H", &bearer, &url("/api/anything")]);
    assert_eq!(text(&proxied), "200");
    let (nonce, timestamp) = common::replay_headers();
    let nonce = format!("X-Request-Nonce: {nonce}");
    let timestamp = format!("X-Request-Timestamp: {timestamp}");
    let post = |extra: &[&str]| {
        let mut args = vec!["--cacert", &ca, "-X", "POST", "-H", &bearer];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-d", "{}"]);
        let target = url("/api/anything");
        args.push(&target);
        text(&curl_code(&args))
    };
    assert_eq!(post(&["-H", &nonce, "-H", &timestamp]), "200");
    assert_ne!(
        post(&[]),
        "200",
        "a POST without replay headers went through"
    );

    // Log out: the token stops working at once.
    let logout = curl_code(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-H",
        &bearer,
        &url("/auth/logout"),
    ]);
    assert!(text(&logout).starts_with('2'), "logout: {}", text(&logout));
    let after = curl_code(&["--cacert", &ca, "-H", &bearer, &url("/auth/session")]);
    assert_eq!(text(&after), "401");

    // Pin the public key instead of trusting the root.
    let fingerprint = clawgate(&["cert", "fingerprint"], home.path());
    let pin = stdout(&fingerprint)
        .lines()
        .find_map(|l| l.strip_prefix("spki pin: "))
        .unwrap_or_else(|| panic!("no spki pin line: {}", stdout(&fingerprint)))
        .to_owned();
    let pinned = curl_code(&["-k", "--pinnedpubkey", &pin, &url("/health")]);
    assert_eq!(text(&pinned), "200", "{}", stderr(&pinned));
    let wrong = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let refused = curl(&["-k", "--pinnedpubkey", wrong, &url("/health")]).unwrap();
    assert_eq!(refused.status.code(), Some(90), "a wrong pin must fail");
    stop(serving);
}
