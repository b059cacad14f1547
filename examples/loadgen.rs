//! Loopback load tool behind docs/performance.md. It starts a loopback
//! upstream, runs the release `clawgate` binary as a child process with a
//! generated config, and measures:
//!
//! 1. handshake latency (TCP connect + TLS 1.3 handshake) p50/p99 at a
//!    stated concurrency;
//! 2. authenticated requests per second through the gateway to the
//!    upstream, versus straight to the upstream, same client, same run;
//! 3. N concurrent TLS connections held open at once, then every one of
//!    them served a request, with the gateway's resident memory per
//!    connection.
//!
//! Run (only 127.0.0.1 is ever contacted):
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example loadgen -- --connections 10000
//! ```
//!
//! Each process needs a file descriptor per connection: 10,000 connections
//! need `ulimit -n` above ~10,100 in the shell that runs this (the child
//! inherits it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;

#[path = "support/mod.rs"]
mod support;
use support::{client_config, connect, rss_kib, spawn_upstream, wait_until_up};

struct Args {
    binary: PathBuf,
    connections: usize,
    handshakes: usize,
    handshake_concurrency: usize,
    rps_connections: usize,
    seconds: u64,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            binary: PathBuf::from("target/release/clawgate"),
            connections: 10_000,
            handshakes: 2_000,
            handshake_concurrency: 8,
            rps_connections: 32,
            seconds: 10,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--binary" => args.binary = PathBuf::from(value),
                "--connections" => args.connections = value.parse()?,
                "--handshakes" => args.handshakes = value.parse()?,
                "--handshake-concurrency" => args.handshake_concurrency = value.parse()?,
                "--rps-connections" => args.rps_connections = value.parse()?,
                "--seconds" => args.seconds = value.parse()?,
                other => bail!("unknown flag {other}"),
            }
        }
        Ok(args)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let dir = tempfile::tempdir()?;
    let upstream = spawn_upstream().await?;
    let (mut child, addr, token) = start_gateway(&args.binary, dir.path(), upstream)?;
    let pid = child.id();
    let ca = dir.path().join("certs/ca.crt");
    for _ in 0..200 {
        if ca.is_file() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tls = Arc::new(client_config(&ca)?);
    wait_until_up(addr, &tls).await?;

    println!(
        "# clawgate loadgen ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (p50, p99, per_sec) =
        handshakes(addr, &tls, args.handshakes, args.handshake_concurrency).await?;
    println!(
        "handshake latency (connect + TLS 1.3, concurrency {}): p50 {:.2} ms, p99 {:.2} ms, {:.0} handshakes/s over {} handshakes",
        args.handshake_concurrency, p50, p99, per_sec, args.handshakes
    );

    let secs = Duration::from_secs(args.seconds);
    let gateway = |path: &'static str| Target::Gateway {
        addr,
        tls: Arc::clone(&tls),
        token: token.clone(),
        path,
    };
    let through = requests_per_second(gateway("/bench"), args.rps_connections, secs).await?;
    let public = requests_per_second(gateway("/public/bench"), args.rps_connections, secs).await?;
    let direct = requests_per_second(Target::Direct(upstream), args.rps_connections, secs).await?;
    println!(
        "GET, {} keep-alive HTTP/1.1 connections, {} s each: authenticated through gateway {:.0} req/s; \
         public path through gateway (TLS + proxy, no token) {:.0} req/s; direct to upstream (plain HTTP) {:.0} req/s; \
         authenticated/direct = {:.2}",
        args.rps_connections,
        args.seconds,
        through,
        public,
        direct,
        through / direct
    );

    let before = rss_kib(pid)?;
    let held = hold_connections(addr, &tls, args.connections).await?;
    let during = rss_kib(pid)?;
    let served = serve_each(held, &token).await;
    println!(
        "concurrent connections: {} opened and held, {} served a request; gateway RSS {} MiB -> {} MiB = {:.1} KiB per connection",
        args.connections,
        served,
        before / 1024,
        during / 1024,
        (during.saturating_sub(before)) as f64 / args.connections as f64
    );
    child.kill()?;
    let _ = child.wait();
    Ok(())
}

fn start_gateway(
    binary: &Path,
    dir: &Path,
    upstream: SocketAddr,
) -> anyhow::Result<(Child, SocketAddr, String)> {
    if !binary.is_file() {
        bail!(
            "{} not found: run `cargo build --release` first",
            binary.display()
        );
    }
    let keys = dir.join("keys");
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(binary).args(args).env("HOME", dir).output()?;
        if !out.status.success() {
            bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    let keys_arg = keys.to_str().context("keys path")?;
    run(&["keys", "generate", "--keys-dir", keys_arg])?;
    let token = run(&[
        "token",
        "issue",
        "--sub",
        "load",
        "--ttl",
        "2h",
        "--keys-dir",
        keys_arg,
    ])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = format!(
        // One loopback address holds every connection, idle for minutes:
        // lift the per-address cap and the first-request/idle deadlines.
        "[server]\nlisten = \"{addr}\"\nmax_connections = 20000\nmax_connections_per_ip = 0\n\
         header_read_timeout = \"10m\"\nidle_timeout = \"10m\"\n\
         [tls]\ncert_dir = {certs:?}\n[tokens]\nkeys_dir = {keys:?}\n[state]\ndir = {state:?}\n\
         [auth]\npairing = false\n[upstream]\nurl = \"http://{upstream}\"\npublic_paths = [\"/public/*\"]\n[metrics]\nenabled = false\n[log]\nlevel = \"warn\"\n",
        certs = dir.join("certs"),
        state = dir.join("state"),
    );
    let file = dir.join("gateway.toml");
    std::fs::write(&file, config)?;
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok((child, addr, token))
}

async fn handshakes(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (tls, next) = (Arc::clone(tls), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total as u64 {
                let t = Instant::now();
                connect(addr, &tls).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| support::percentile(&all, p);
    Ok((pct(0.50), pct(0.99), all.len() as f64 / elapsed))
}

#[derive(Clone)]
enum Target {
    Gateway {
        addr: SocketAddr,
        tls: Arc<ClientConfig>,
        token: String,
        path: &'static str,
    },
    Direct(SocketAddr),
}

async fn requests_per_second(
    target: Target,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (target, done, stop) = (target.clone(), Arc::clone(&done), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let (mut sender, auth, path) = match &target {
                Target::Gateway {
                    addr,
                    tls,
                    token,
                    path,
                } => {
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
                        connect(*addr, tls).await?,
                    ))
                    .await?;
                    tokio::spawn(conn);
                    (s, Some(format!("Bearer {token}")), *path)
                }
                Target::Direct(addr) => {
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
                        TcpStream::connect(addr).await?,
                    ))
                    .await?;
                    tokio::spawn(conn);
                    (s, None, "/bench")
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let mut req = Request::get(path).header("host", "localhost");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                let resp = sender
                    .send_request(req.body(Empty::<Bytes>::new())?)
                    .await?;
                if !resp.status().is_success() {
                    bail!("status {}", resp.status());
                }
                resp.into_body().collect().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64())
}

async fn hold_connections(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    n: usize,
) -> anyhow::Result<Vec<TlsStream<TcpStream>>> {
    // Bounded opening concurrency keeps the listen backlog from overflowing.
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (tls, gate) = (Arc::clone(tls), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect(addr, &tls).await
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        held.push(t.await??);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(held)
}

async fn serve_each(held: Vec<TlsStream<TcpStream>>, token: &str) -> usize {
    let gate = Arc::new(Semaphore::new(256));
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for stream in held {
        let (gate, served, auth) = (
            Arc::clone(&gate),
            Arc::clone(&served),
            format!("Bearer {token}"),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return;
            };
            tokio::spawn(conn);
            let req = Request::get("/bench")
                .header("host", "localhost")
                .header("authorization", auth)
                .body(Full::new(Bytes::new()));
            if let Ok(req) = req
                && let Ok(resp) = sender.send_request(req).await
                && resp.status().is_success()
                && resp.into_body().collect().await.is_ok()
            {
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    served.load(Ordering::Relaxed) as usize
}
