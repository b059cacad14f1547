//! The `clawgate` binary: exit codes, one-line errors, and each subcommand
//! end to end on real files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

fn clawgate(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(args)
        .env("HOME", home)
        .current_dir(home)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_init_output_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let init = clawgate(&["config", "init"], dir.path());
    assert!(init.status.success());
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, &init.stdout).unwrap();
    let check = clawgate(&["config", "check", file.to_str().unwrap()], dir.path());
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).ends_with(": ok\n"));
}

#[test]
fn bad_config_exits_64_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[tls]\nrenew_before = \"3x\"\n").unwrap();
    let check = clawgate(&["config", "check", file.to_str().unwrap()], dir.path());
    assert_eq!(check.status.code(), Some(64));
    let err = stderr(&check);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("[tls] renew_before") && err.contains("not a duration"),
        "{err}"
    );
}

#[test]
fn usage_error_is_not_success() {
    let dir = tempfile::tempdir().unwrap();
    let out = clawgate(&["frobnicate"], dir.path());
    assert!(!out.status.success());
}

#[test]
fn keys_generate_rotate_list_prune() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let k = keys.to_str().unwrap();
    let first = clawgate(&["keys", "generate", "--keys-dir", k], dir.path());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).starts_with("signing k4.pid."),
        "{}",
        stdout(&first)
    );
    let staged = clawgate(&["keys", "generate", "--keys-dir", k], dir.path());
    assert!(
        stdout(&staged).starts_with("staged k4.pid."),
        "{}",
        stdout(&staged)
    );
    let rotated = clawgate(&["keys", "rotate", "--keys-dir", k], dir.path());
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let list = stdout(&clawgate(&["keys", "list", "--keys-dir", k], dir.path()));
    assert_eq!(
        list.lines().filter(|l| l.starts_with("signing ")).count(),
        1,
        "{list}"
    );
    assert_eq!(
        list.lines().filter(|l| l.starts_with("retired ")).count(),
        1,
        "{list}"
    );
    let prune = clawgate(&["keys", "prune", "--keys-dir", k], dir.path());
    assert!(prune.status.success());
    assert!(
        stdout(&prune).contains("nothing to prune"),
        "a just-retired key must be kept: {}",
        stdout(&prune)
    );
    for entry in std::fs::read_dir(&keys).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            assert_eq!(clawgate::secret_file::mode_of(&path).unwrap(), 0o600);
        }
    }
}

#[test]
fn token_issue_then_verify() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("keys");
    let k = k.to_str().unwrap();
    assert!(
        clawgate(&["keys", "generate", "--keys-dir", k], dir.path())
            .status
            .success()
    );
    let issued = clawgate(
        &[
            "token",
            "issue",
            "--sub",
            "alice",
            "--ttl",
            "1h",
            "--scope",
            "admin",
            "--keys-dir",
            k,
        ],
        dir.path(),
    );
    assert!(issued.status.success(), "{}", stderr(&issued));
    let token = stdout(&issued).trim().to_owned();
    assert!(token.starts_with("v4.public."));
    let verified = clawgate(&["token", "verify", &token, "--keys-dir", k], dir.path());
    assert!(verified.status.success(), "{}", stderr(&verified));
    let text = stdout(&verified);
    assert!(
        text.contains("\"sub\": \"alice\"") && text.contains("admin"),
        "{text}"
    );
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let bad = clawgate(&["token", "verify", &tampered, "--keys-dir", k], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains(&tampered), "error echoed the token");
}

#[test]
fn hash_password_reads_stdin_and_prints_argon2id() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let hash = stdout(&out);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret"));
}

#[test]
fn cert_generate_then_show() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[tls]\ncert_dir = {:?}\n", dir.path().join("certs")),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let generated = clawgate(&["cert", "generate", "--config", cfg], dir.path());
    assert!(generated.status.success(), "{}", stderr(&generated));
    let show = stdout(&clawgate(&["cert", "show", "--config", cfg], dir.path()));
    assert!(
        show.contains("server:") && show.contains("root:") && show.contains("localhost"),
        "{show}"
    );
    assert!(show.contains("spki pin: sha256//"));
}

#[test]
fn serve_refuses_to_start_without_usable_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // Files that exist but hold no certificate (a missing file is a
    // configuration error, exit 64: tests/gateway/first_run.rs).
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    std::fs::write(&cfg, format!("[tls]\ncert_path = {cert:?}\nkey_path = {key:?}\n[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n")).unwrap();
    let out = clawgate(&["serve", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("refusing to start"), "{err}");
    assert!(stdout(&out).is_empty(), "nothing may be served");
}

/// Runs `serve` on `cfg`; a gateway that starts anyway is killed after
/// ten seconds and fails the test.
fn serve_until_refused(cfg: &Path, home: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("HOME", home)
        .current_dir(home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("serve started on a config it must refuse: {}", stdout(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn config_check_and_serve_refuse_the_same_configs_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Everything that `serve` could create stays in the temporary directory.
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n\
         [state]\ndir = {:?}\n",
        d.join("state"),
    );
    let tls_dirs = format!("cert_dir = {:?}\n", d.join("certs"));
    let keys = format!("keys_dir = {:?}\n", d.join("keys"));
    let hash =
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$V8GSz3ZT9ZcjgLfTY6iTMtOIrDCtIJxmNyMZhwSKovI";
    let loose_password = d.join("redis-password");
    std::fs::write(&loose_password, "hunter2\n").unwrap();
    std::fs::set_permissions(
        &loose_password,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let cases: [(&str, String, &str, u8); 9] = [
        (
            "pairing with cluster mode",
            format!("[tls]\n{tls_dirs}[tokens]\n{keys}[cluster]\nmode = \"redis\"\n"),
            "[auth] pairing: must be false with [cluster] mode = \"redis\"",
            64,
        ),
        (
            "a Redis password file others can read",
            format!(
                "[tls]\n{tls_dirs}[tokens]\n{keys}[auth]\npairing = false\n[cluster]\nmode = \"redis\"\npassword_file = {loose_password:?}\n"
            ),
            "chmod 600",
            64,
        ),
        (
            "a scope with a space",
            format!(
                "[tls]\n{tls_dirs}[tokens]\n{keys}[[auth.users]]\nname = \"alice\"\npassword_hash = {hash:?}\nscopes = [\"read write\"]\n"
            ),
            "scope \"read write\"",
            64,
        ),
        (
            "an unparsable password hash",
            format!(
                "[tls]\n{tls_dirs}[tokens]\n{keys}[[auth.users]]\nname = \"dave\"\npassword_hash = \"$argon2id$v=19$garbage\"\n"
            ),
            "[auth.users] password_hash: for \"dave\"",
            64,
        ),
        (
            "a missing provided certificate",
            format!(
                "[tls]\ncert_path = {:?}\nkey_path = {:?}\n[tokens]\n{keys}",
                d.join("none.pem"),
                d.join("none.key")
            ),
            "[tls] cert_path: ",
            64,
        ),
        (
            "a sub-second session lifetime",
            format!("[tls]\n{tls_dirs}[tokens]\n{keys}session_ttl = \"999ms\"\n"),
            "[tokens] session_ttl: must be at least 1s",
            64,
        ),
        (
            "an absolute limit over 100 years",
            format!("[tls]\n{tls_dirs}[tokens]\n{keys}absolute_timeout = \"101years\"\n"),
            "[tokens] absolute_timeout: must be at most 100 years",
            64,
        ),
        (
            "an upstream URL with a path",
            format!(
                "[tls]\n{tls_dirs}[tokens]\n{keys}[upstream]\nurl = \"http://127.0.0.1:9/api\"\n"
            ),
            "[upstream] url: ",
            64,
        ),
        (
            "a client CA bundle that is not there",
            format!(
                "[tls]\n{tls_dirs}client_auth = \"required\"\nclient_ca_path = {:?}\n[tokens]\n{keys}",
                d.join("none-ca.pem")
            ),
            "[tls] client_ca_path: ",
            64,
        ),
    ];
    for (what, text, fragment, code) in cases {
        let cfg = d.join("bad.toml");
        std::fs::write(&cfg, format!("{base}{text}")).unwrap();
        let check = clawgate(&["config", "check", cfg.to_str().unwrap()], d);
        let serve = serve_until_refused(&cfg, d);
        let (check_err, serve_err) = (stderr(&check), stderr(&serve));
        assert_eq!(
            check.status.code(),
            Some(i32::from(code)),
            "{what}: {check_err}"
        );
        assert_eq!(
            serve.status.code(),
            check.status.code(),
            "{what}: {serve_err}"
        );
        assert_eq!(serve_err, check_err, "{what}: one message for both");
        assert_eq!(check_err.lines().count(), 1, "{what}: {check_err}");
        assert!(
            check_err.contains(fragment),
            "{what}: {fragment} not in {check_err}"
        );
        assert!(
            !check_err.contains("hunter2"),
            "{what}: a secret in {check_err}"
        );
        assert!(stdout(&serve).is_empty(), "{what}: nothing may be served");
        // A refused configuration creates nothing: no key, no state.
        assert!(!d.join("keys").exists(), "{what}: keys created");
        assert!(!d.join("state").exists(), "{what}: state created");
    }
}

/// Kills the gateway if a test fails before stopping it.
struct Serving(Option<Child>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads banner lines until the metrics line (the last one printed).
fn read_banner(stdout: ChildStdout) -> Vec<String> {
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let last = line.starts_with("metrics: ");
        lines.push(line);
        if last {
            break;
        }
    }
    lines
}

fn banner_value<'a>(banner: &'a [String], prefix: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {banner:?}"))
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

async fn published_keys(client: &common::TestClient, addr: SocketAddr) -> usize {
    let keys = client.get(addr, "/.well-known/paseto-keys").await.json();
    keys["keys"].as_array().unwrap().len()
}

#[tokio::test]
async fn serve_prints_banner_reloads_on_sighup_and_stops_on_sigterm() {
    if common::tool("kill").is_none() {
        eprintln!("skipped: no kill(1) to send signals with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let cfg = dir.path().join("c.toml");
    // A long key poll, so only SIGHUP can make the staged key appear.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [tls]\ncert_dir = {:?}\n[tokens]\nkeys_dir = {keys:?}\nkey_poll_interval = \"1h\"\n\
         [state]\ndir = {:?}\n",
        dir.path().join("certs"),
        dir.path().join("state"),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut serving = Serving(Some(
        Command::new(env!("CARGO_BIN_EXE_clawgate"))
            // stdout is a pipe here: ask for the banner for a person
            // (tests/gateway/first_run.rs covers the JSON `ready` line).
            .args([
                "serve",
                "--banner",
                "text",
                "--config",
                cfg.to_str().unwrap(),
            ])
            .env("HOME", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = serving.0.as_mut().unwrap();
    let banner = read_banner(child.stdout.take().unwrap());

    let addr: SocketAddr = banner_value(&banner, "clawgate listening on https://")
        .parse()
        .unwrap();
    let root = PathBuf::from(banner_value(&banner, "trust this root once: "));
    assert_eq!(root, dir.path().join("certs").join("ca.crt"));
    let fingerprint = banner_value(&banner, "certificate sha256 fingerprint: ");
    let offline = clawgate(
        &["cert", "fingerprint", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        stdout(&offline).contains(fingerprint),
        "the banner names the certificate on disk: {fingerprint}"
    );
    assert!(banner_value(&banner, "certificate spki pin: ").starts_with("sha256//"));
    assert!(!banner_value(&banner, "pairing code: ").is_empty());

    let client = common::TestClient::trusting(&root);
    assert_eq!(client.get(addr, "/health").await.status, 200);
    assert_eq!(published_keys(&client, addr).await, 1);

    let staged = clawgate(
        &["keys", "generate", "--keys-dir", keys.to_str().unwrap()],
        dir.path(),
    );
    assert!(staged.status.success(), "{}", stderr(&staged));
    signal(serving.0.as_ref().unwrap(), "HUP");
    let reloaded = common::eventually_async(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(100),
        || async { published_keys(&client, addr).await == 2 },
    )
    .await;
    assert!(
        reloaded,
        "SIGHUP reloads the keys directory (published: {})",
        published_keys(&client, addr).await
    );

    let child = serving.0.take().unwrap();
    signal(&child, "TERM");
    // Waited for off the runtime, so this test's client connections stay
    // live and close when the gateway's graceful shutdown asks them to.
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "SIGTERM is a clean stop: {:?}",
        out.status
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains(r#""event":"shutdown_complete""#),
        "idle connections close at once instead of waiting out the grace: {logs}"
    );
    let code = banner_value(&banner, "pairing code: ");
    assert!(
        !logs.contains(code),
        "the pairing code is printed once, never logged"
    );
}

fn token_issue(dir: &Path, extra: &[&str]) -> Output {
    let keys = dir.join("keys");
    let keys = keys.to_str().unwrap();
    if !dir.join("keys").exists() {
        assert!(
            clawgate(&["keys", "generate", "--keys-dir", keys], dir)
                .status
                .success()
        );
    }
    let mut args = vec!["token", "issue", "--sub", "alice", "--keys-dir", keys];
    args.extend_from_slice(extra);
    clawgate(&args, dir)
}

#[test]
fn token_issue_refuses_a_ttl_beyond_the_absolute_limit() {
    // Issue 11 item 3: a 365-day token outlived its revocation (sized from
    // the 30-day absolute limit).
    let dir = tempfile::tempdir().unwrap();
    let out = token_issue(dir.path(), &["--ttl", "365d"]);
    assert_eq!(out.status.code(), Some(64), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "no token printed");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("absolute_timeout"), "{err}");
    let longest = token_issue(dir.path(), &["--ttl", "30d"]);
    assert!(longest.status.success(), "{}", stderr(&longest));
}

#[test]
fn token_issue_under_required_binding_needs_a_client_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "[auth]\nbinding = \"required\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let unbound = token_issue(dir.path(), &["--config", cfg]);
    assert_eq!(unbound.status.code(), Some(64), "{}", stdout(&unbound));
    let err = stderr(&unbound);
    assert!(
        err.contains("required") && err.contains("--client-key"),
        "{err}"
    );

    let client = clawgate::binding_client::BindingClient::generate().unwrap();
    let key = client.key().public_paserk().to_owned();
    let bound = token_issue(dir.path(), &["--config", cfg, "--client-key", key.as_str()]);
    assert!(bound.status.success(), "{}", stderr(&bound));
    let token = stdout(&bound).trim().to_owned();
    let keys = dir.path().join("keys");
    let verified = clawgate(
        &[
            "token",
            "verify",
            &token,
            "--keys-dir",
            keys.to_str().unwrap(),
        ],
        dir.path(),
    );
    let text = stdout(&verified);
    assert!(text.contains("\"kpid\": \"k4.pid."), "{text}");

    let bad = token_issue(
        dir.path(),
        &["--config", cfg, "--client-key", "k4.public.x"],
    );
    assert_eq!(bad.status.code(), Some(64), "{}", stderr(&bad));
}
