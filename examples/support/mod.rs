//! What the load examples share: a TLS 1.3 client that trusts the
//! gateway's local root, a loopback upstream, the CLI run as a child, and
//! percentiles. Only 127.0.0.1 is ever contacted.

#![allow(dead_code, unreachable_pub)] // each example uses its part

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A TLS 1.3 client config trusting the PEM roots in `ca`, HTTP/1.1, no
/// resumption (every connection is a full handshake).
pub fn client_config(ca: &Path) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// TCP connect + TLS handshake to `addr` as `localhost`.
pub async fn connect(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(TlsConnector::from(Arc::clone(tls))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

/// Waits (10 s at most) until a TLS handshake with `addr` succeeds.
pub async fn wait_until_up(addr: SocketAddr, tls: &Arc<ClientConfig>) -> anyhow::Result<()> {
    for _ in 0..200 {
        if connect(addr, tls).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("gateway did not come up on {addr}")
}

/// Waits (10 s at most) for `path` to exist.
pub async fn wait_for_file(path: &Path) -> anyhow::Result<()> {
    for _ in 0..200 {
        if path.is_file() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{} did not appear", path.display())
}

/// A loopback upstream answering `ok` to everything.
pub async fn spawn_upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Runs `binary args…` with `HOME=home`; its trimmed stdout.
pub fn run_cli(binary: &Path, home: &Path, args: &[&str]) -> anyhow::Result<String> {
    if !binary.is_file() {
        bail!(
            "{} not found: run `cargo build --release` first",
            binary.display()
        );
    }
    let out = std::process::Command::new(binary)
        .args(args)
        .env("HOME", home)
        .output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `p` quantile (0..=1) of sorted `values`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}
