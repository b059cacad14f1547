//! Cluster-mode figures for docs/performance.md, side by side with a
//! standalone gateway in the same run. Starts a real `redis-server` on a
//! free loopback port, a loopback upstream, and three release `clawgate`
//! processes sharing one keys and certificate directory: S (standalone),
//! A and B (`[cluster] mode = "redis"`). Then:
//!
//! 1. added latency: GETs with a bearer token, and POSTs with replay
//!    headers (one `SET NX` in cluster mode), on S and on A alternately
//!    (S A S A …), the same client, `--connections` keep-alive connections;
//!    p50/p99 of each and the difference;
//! 2. revocation propagation under load: GET load on B while `--revocations`
//!    sessions are logged out one by one on A; for each, the time from the
//!    logout's answer on A until B refuses the token (B is polled), with
//!    p50/p99/max and the misses (> 1 s);
//! 3. Redis memory per nonce key and per revocation (`INFO memory`).
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example cluster_bench -- --rounds 3
//! ```
//!
//! Needs `redis-server` (Debian package) on PATH or in /usr/bin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

#[path = "support/mod.rs"]
mod support;
use support::{
    client_config, connect, free_port, percentile, run_cli, spawn_upstream, wait_for_file,
    wait_until_up,
};

struct Args {
    binary: PathBuf,
    rounds: usize,
    requests: usize,
    connections: usize,
    revocations: usize,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            binary: PathBuf::from("target/release/clawgate"),
            rounds: 3,
            requests: 20_000,
            connections: 8,
            revocations: 1_000,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--binary" => args.binary = PathBuf::from(value),
                "--rounds" => args.rounds = value.parse()?,
                "--requests" => args.requests = value.parse()?,
                "--connections" => args.connections = value.parse()?,
                "--revocations" => args.revocations = value.parse()?,
                other => bail!("unknown flag {other}"),
            }
        }
        Ok(args)
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .context("redis-server not found (Debian: apt-get install redis-server)")
}

fn start_redis(dir: &Path) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let child = Command::new(redis_binary()?)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--maxmemory-policy", "noeviction"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((Proc(child), port))
}

/// `INFO memory` used_memory, in bytes.
fn redis_used_memory(port: u16) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"INFO memory\r\n")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    let mut buf = [0u8; 8192];
    while !text.contains("used_memory:") || !text.ends_with("\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("used_memory not in INFO")
}

/// Starts `serve` with a config in `dir/<name>.toml`; its address.
fn start_gateway(
    args: &Args,
    dir: &Path,
    name: &str,
    upstream: SocketAddr,
    redis_port: Option<u16>,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cluster = redis_port.map_or_else(String::new, |p| {
        format!(
            "[cluster]\nmode = \"redis\"\nurl = \"redis://127.0.0.1:{p}/0\"\nnode_id = \"{name}\"\n"
        )
    });
    let config = format!(
        "[server]\nlisten = \"{addr}\"\nmax_connections_per_ip = 0\n\
         [tls]\ncert_dir = {certs:?}\n[tokens]\nkeys_dir = {keys:?}\n[state]\ndir = {state:?}\n\
         [auth]\npairing = false\nrate_limit_per_minute = 1000000\n\
         [replay]\nmax_nonces = 1000000\nmax_nonces_per_session = 1000000\nmax_nonces_per_subject = 1000000\n[upstream]\nurl = \"http://{upstream}\"\n[metrics]\nenabled = false\n\
         [log]\nlevel = \"warn\"\naccess_log = false\n{cluster}",
        certs = dir.join("certs"),
        keys = dir.join("keys"),
        state = dir.join(format!("state-{name}")),
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config)?;
    let child = Command::new(&args.binary)
        .args(["serve", "--banner", "log", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok((Proc(child), addr))
}

async fn sender(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let (s, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(addr, tls).await?)).await?;
    tokio::spawn(conn);
    Ok(s)
}

fn nonce() -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `requests` requests over `connections` connections; sorted latencies in µs.
async fn latencies(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    token: &str,
    post: bool,
    requests: usize,
    connections: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (tls, auth) = (Arc::clone(tls), format!("Bearer {token}"));
        let n = requests / connections;
        tasks.push(tokio::spawn(async move {
            let mut s = sender(addr, &tls).await?;
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let mut req = Request::builder()
                    .uri("/bench")
                    .header("host", "localhost")
                    .header("authorization", &auth);
                if post {
                    req = req
                        .method("POST")
                        .header("x-request-nonce", nonce())
                        .header("x-request-timestamp", unix_now().to_string());
                }
                let req = req.body(Full::new(Bytes::from_static(b"{}")))?;
                let t = Instant::now();
                let resp = s.send_request(req).await?;
                let status = resp.status();
                resp.into_body().collect().await?;
                times.push(t.elapsed().as_secs_f64() * 1e6);
                if !status.is_success() {
                    bail!("status {status}");
                }
            }
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

async fn status(
    s: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    token: &str,
) -> anyhow::Result<u16> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let resp = s.send_request(req).await?;
    let code = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(code)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (_redis, redis_port) = start_redis(d)?;
    let upstream = spawn_upstream().await?;
    let keys = d.join("keys");
    let keys_arg = keys.to_str().context("keys path")?;
    run_cli(
        &args.binary,
        d,
        &["keys", "generate", "--keys-dir", keys_arg],
    )?;
    let issue = || {
        run_cli(
            &args.binary,
            d,
            &[
                "token",
                "issue",
                "--sub",
                "bench",
                "--ttl",
                "2h",
                "--keys-dir",
                keys_arg,
            ],
        )
    };
    let token = issue()?;

    // S first: it creates the shared root and certificate.
    let (_s, s_addr) = start_gateway(&args, d, "s", upstream, None)?;
    wait_for_file(&d.join("certs/ca.crt")).await?;
    let tls = Arc::new(client_config(&d.join("certs/ca.crt"))?);
    wait_until_up(s_addr, &tls).await?;
    let (_a, a_addr) = start_gateway(&args, d, "a", upstream, Some(redis_port))?;
    let (_b, b_addr) = start_gateway(&args, d, "b", upstream, Some(redis_port))?;
    wait_until_up(a_addr, &tls).await?;
    wait_until_up(b_addr, &tls).await?;
    println!(
        "# clawgate cluster_bench ({} cores), {} rounds S A S A, {} requests x {} connections each",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.rounds,
        args.requests,
        args.connections
    );

    // 1. Added latency, alternating.
    let mut rows: Vec<(&str, &str, Vec<f64>)> = Vec::new();
    let memory_before = redis_used_memory(redis_port)?;
    let mut nonces_sent = 0usize;
    for _ in 0..args.rounds {
        for (name, addr) in [("standalone", s_addr), ("cluster", a_addr)] {
            for (kind, post) in [("GET", false), ("POST+nonce", true)] {
                let t =
                    latencies(addr, &tls, &token, post, args.requests, args.connections).await?;
                if post && name == "cluster" {
                    nonces_sent += t.len();
                }
                let p50 = percentile(&t, 0.5);
                println!(
                    "  {name:<10} {kind:<10} p50 {p50:8.1} µs  p99 {:8.1} µs",
                    percentile(&t, 0.99)
                );
                rows.push((name, kind, t));
            }
        }
    }
    let memory_after_nonces = redis_used_memory(redis_port)?;
    println!(
        "\n| request | standalone p50 / p99 µs | cluster p50 / p99 µs | added p50 / p99 µs |\n|---|---|---|---|"
    );
    for kind in ["GET", "POST+nonce"] {
        let merged = |mode: &str| {
            let mut all: Vec<f64> = rows
                .iter()
                .filter(|(n, k, _)| *n == mode && *k == kind)
                .flat_map(|(_, _, t)| t.iter().copied())
                .collect();
            all.sort_by(f64::total_cmp);
            (percentile(&all, 0.5), percentile(&all, 0.99))
        };
        let (s50, s99) = merged("standalone");
        let (c50, c99) = merged("cluster");
        println!(
            "| {kind} | {s50:.1} / {s99:.1} | {c50:.1} / {c99:.1} | {:+.1} / {:+.1} |",
            c50 - s50,
            c99 - s99
        );
    }
    println!(
        "\nRedis memory per nonce key: {:.0} B ({} nonces)",
        (memory_after_nonces.saturating_sub(memory_before)) as f64 / nonces_sent.max(1) as f64,
        nonces_sent
    );

    // 2. Propagation under GET load on B.
    let mut tokens = Vec::with_capacity(args.revocations);
    for _ in 0..args.revocations {
        tokens.push(issue()?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (tls, token, stop) = (Arc::clone(&tls), token.clone(), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let mut s = sender(b_addr, &tls).await?;
            while !stop.load(Ordering::Relaxed) {
                status(&mut s, "GET", "/bench", &token).await?;
            }
            anyhow::Ok(())
        }));
    }
    let memory_before_revocations = redis_used_memory(redis_port)?;
    let mut times = Vec::with_capacity(tokens.len());
    let mut misses = 0usize;
    for t in &tokens {
        // Fresh connections each time: a gateway closes the connections
        // that carried a session once it ends (logout here, the remote
        // revocation on B), so neither can be reused for the next token.
        let mut on_a = sender(a_addr, &tls).await?;
        let mut on_b = sender(b_addr, &tls).await?;
        if status(&mut on_b, "GET", "/bench", t).await? != 200 {
            bail!("a fresh token was refused on B");
        }
        let code = status(&mut on_a, "POST", "/auth/logout", t).await?;
        if code >= 300 {
            bail!("logout on A: {code}");
        }
        let started = Instant::now();
        loop {
            let refused = match status(&mut on_b, "GET", "/bench", t).await {
                Ok(code) => code == 401,
                // B closed the connection that carried the ended session:
                // ask again on a new one.
                Err(_) => {
                    on_b = sender(b_addr, &tls).await?;
                    status(&mut on_b, "GET", "/bench", t).await? == 401
                }
            };
            if refused {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if started.elapsed() > Duration::from_secs(1) {
                misses += 1;
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await??;
    }
    let memory_after_revocations = redis_used_memory(redis_port)?;
    times.sort_by(f64::total_cmp);
    println!(
        "revocation propagation A -> B under GET load on B ({} logouts): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, misses (> 1 s) {misses}",
        tokens.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "Redis memory per revocation (hash + expiry index + stream entry): {:.0} B",
        (memory_after_revocations.saturating_sub(memory_before_revocations)) as f64
            / tokens.len().max(1) as f64
    );
    Ok(())
}
