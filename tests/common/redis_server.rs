//! A real `redis-server` per test: Debian's binary on a free loopback
//! port, with its own data directory, killed when dropped. Faults are made
//! for real: SIGKILL (connections refused at once), SIGSTOP/SIGCONT (a
//! black hole: the kernel still completes connects, replies never come)
//! and a restart, with or without the data.
//!
//! A missing `redis-server` fails the test with the fix (install the
//! `redis-server` package): the cluster tests never pass by skipping.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` on 127.0.0.1.
pub struct RedisProc {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    appendonly: bool,
    /// Extra server arguments (`--requirepass`, TLS files).
    extra: Vec<String>,
    /// The port speaks TLS only: readiness is a TCP connect, not PING.
    tls: bool,
}

impl RedisProc {
    /// Starts a server with persistence off (`--save ""`, no AOF).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server; `appendonly` keeps every write in an fsync'd AOF,
    /// so a SIGKILL and restart keeps the data.
    pub fn start_with(appendonly: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let port = free_port();
        let mut proc = Self {
            child: None,
            port,
            dir,
            appendonly,
            extra: Vec::new(),
            tls: false,
        };
        proc.spawn();
        proc
    }

    /// Starts a server that wants `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_configured(vec!["--requirepass".to_owned(), password.to_owned()], false)
    }

    /// Starts a server that speaks only TLS on its port, with the given
    /// PEM certificate chain, key and CA (clients are not asked for a
    /// certificate).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Self {
        let path = |p: &std::path::Path| p.display().to_string();
        Self::start_configured(
            vec![
                "--tls-cert-file".to_owned(),
                path(cert),
                "--tls-key-file".to_owned(),
                path(key),
                "--tls-ca-cert-file".to_owned(),
                path(ca),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ],
            true,
        )
    }

    fn start_configured(extra: Vec<String>, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut proc = Self {
            child: None,
            port: free_port(),
            dir,
            appendonly: false,
            extra,
            tls,
        };
        proc.spawn();
        proc
    }

    fn spawn(&mut self) {
        let binary = binary();
        let mut cmd = Command::new(&binary);
        if self.tls {
            cmd.args(["--port", "0", "--tls-port"]);
        } else {
            cmd.arg("--port");
        }
        cmd.arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--protected-mode",
                "yes",
            ])
            .args(["--maxmemory-policy", "noeviction", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if self.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the server answers PING (at most 10 s).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let up = if self.tls || !self.extra.is_empty() {
                // TLS or a password: PING in clear text would not answer
                // PONG; an accepted connection is enough.
                std::net::TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
                    .is_ok()
            } else {
                self.ping()
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING in 10 s",
            self.port
        );
    }

    /// Whether the server answers PING within 200 ms.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) =
            std::net::TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// A client for assertions made directly on the server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis client")
    }

    /// SIGKILL: the port refuses connections at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: a black hole (connects complete, replies never come).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts the server again on the same port after [`kill`](Self::kill),
    /// with its data (AOF) if it was started with `appendonly`.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server, deletes its data and starts it empty on the same
    /// port (a lost or replaced server).
    pub fn restart_empty(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .status()
                .expect("kill(1)");
            assert!(status.success(), "kill -{sig} failed");
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        // A paused server would ignore SIGKILL's reaping order otherwise.
        self.resume();
        self.kill();
    }
}

/// The `redis-server` binary, or a panic that says how to install it.
fn binary() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = PathBuf::from(dir).join("redis-server");
        if path.is_file() {
            return path;
        }
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    }) {
        return path;
    }
    panic!(
        "redis-server is not installed: the cluster tests need a real server \
         (Debian: apt-get install -y redis-server; .ci/run installs it)"
    );
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
