//! The README's "Running several replicas" example with the real binary:
//! two `clawgate serve` processes on one real `redis-server`, configured as
//! the README writes them (shared keys and certificate directories, a
//! state directory each). A logout on one is refused on the other; a
//! replica killed with SIGKILL and restarted catches up with what it
//! missed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::redis_server::RedisProc;
use crate::common::{self, TestClient, eventually_async};

/// A `clawgate serve` process, killed when dropped.
struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `<name>.toml` in `dir` the way the README does.
fn write_config(dir: &Path, name: &str, redis_url: &str, upstream: SocketAddr) {
    let (port, metrics) = (free_port(), free_port());
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [tls]\ncert_dir = \"certs\"\n[tokens]\nkeys_dir = \"keys\"\n[state]\ndir = \"state-{name}\"\n\
             [auth]\npairing = false\n[upstream]\nurl = \"http://{upstream}\"\n\
             [cluster]\nmode = \"redis\"\nurl = \"{redis_url}\"\nnode_id = \"{name}\"\n"
        ),
    )
    .unwrap();
}

/// Starts `serve --config <name>.toml` and waits for its `ready` line.
fn serve(dir: &Path, name: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["serve", "--banner", "log", "--config"])
        .arg(dir.join(format!("{name}.toml")))
        .env("HOME", dir)
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let ready = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("replica {name} exited before it was ready"))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["event"] == "ready" {
            break value;
        }
    };
    assert!(
        ready["cluster"]
            .as_str()
            .unwrap()
            .starts_with("redis redis://127.0.0.1:"),
        "{ready}"
    );
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let addr = ready["listen"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    Replica { child, addr }
}

fn token_issue(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["token", "issue", "--sub", "alice", "--keys-dir", "keys"])
        .env("HOME", dir)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn session_status(client: &TestClient, addr: SocketAddr, token: &str) -> u16 {
    client
        .send(addr, common::authed("GET", "/auth/session", token, ""))
        .await
        .status
}

async fn refused_within(
    client: &TestClient,
    addr: SocketAddr,
    token: &str,
    limit: Duration,
) -> bool {
    eventually_async(limit, Duration::from_millis(20), || async {
        session_status(client, addr, token).await == 401
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_two_replicas_share_a_logout_and_a_killed_replica_catches_up() {
    let redis = RedisProc::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (upstream, _state) = common::upstream::spawn_upstream().await;
    write_config(d, "a", &redis.url(), upstream);
    write_config(d, "b", &redis.url(), upstream);
    // a first: it creates the shared root, certificate and signing key.
    let a = serve(d, "a");
    let mut b = serve(d, "b");
    let client = TestClient::trusting(&d.join("certs").join("ca.crt"));

    let token = token_issue(d);
    assert_eq!(session_status(&client, b.addr, &token).await, 200);
    assert_eq!(session_status(&client, a.addr, &token).await, 200);
    let logout = client
        .send(a.addr, common::authed("POST", "/auth/logout", &token, ""))
        .await;
    assert!(logout.status < 300, "logout on a: {}", logout.status);
    assert!(
        refused_within(&client, b.addr, &token, Duration::from_secs(1)).await,
        "a logout on a still works on b after 1 s"
    );

    // b dies without a word; a logout on a meanwhile; b comes back.
    let second = token_issue(d);
    assert_eq!(session_status(&client, b.addr, &second).await, 200);
    let _ = b.child.kill();
    let _ = b.child.wait();
    let logout = client
        .send(a.addr, common::authed("POST", "/auth/logout", &second, ""))
        .await;
    assert!(logout.status < 300);
    drop(b);
    let b = serve(d, "b");
    assert!(
        refused_within(&client, b.addr, &token, Duration::from_secs(1)).await,
        "the first logout is forgotten after a restart"
    );
    assert!(
        refused_within(&client, b.addr, &second, Duration::from_secs(1)).await,
        "the logout made while b was down did not reach it"
    );
    drop(a);
}
