//! Shared test helpers: a gateway on 127.0.0.1:0 with temporary
//! directories, a real rustls TLS 1.3 client, and polling helpers;
//! `redis_server` (a real redis-server per test), `tls_echo` (a bare TLS server and client PKI for mutual TLS), `upstream`
//! (loopback upstreams) and `logs` (log capture, shared with the unit tests).
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../../src/test_logs.rs"]
pub mod logs;
pub mod metrics_doc;
pub mod redis_server;
pub mod tls_echo;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clawgate::Config;
use clawgate::gateway::{Gateway, RunningGateway};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedCipherSuite};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A running gateway and the temporary directories it owns.
pub struct TestGateway {
    pub running: RunningGateway,
    pub dir: TempDir,
    pub config: Config,
}

impl TestGateway {
    /// Starts a gateway with defaults adjusted for tests, after `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config, &Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path(), tweak);
        let running = Gateway::build(config.clone())
            .unwrap()
            .start()
            .await
            .unwrap();
        Self {
            running,
            dir,
            config,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.config.tls.cert_dir.join("ca.crt")
    }

    /// A TLS 1.3 client trusting this gateway's local root.
    pub fn client(&self) -> TestClient {
        TestClient::trusting(&self.ca_path())
    }
}

/// A config on loopback ports chosen by the OS, with every directory in `dir`.
pub fn test_config(dir: &Path, tweak: impl FnOnce(&mut Config, &Path)) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.tls.cert_dir = dir.join("certs");
    config.tokens.keys_dir = dir.join("keys");
    config.state.dir = dir.join("state");
    config.server.shutdown_grace = Duration::from_secs(2);
    tweak(&mut config, dir);
    config.validate().unwrap();
    config
}

/// The ring provider rustls clients in tests use.
pub fn client_provider(
    suites: Option<Vec<SupportedCipherSuite>>,
) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    Arc::new(provider)
}

/// The one client builder of the tests: trusts the PEM roots in
/// `ca_pem_path`, with the given suites (None: ring's defaults) and versions;
/// the caller chooses the client certificate (none, or `tls_echo::client`'s).
pub fn client_builder(
    ca_pem_path: &Path,
    suites: Option<Vec<SupportedCipherSuite>>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(ca_pem_path).unwrap();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: CertificateDer<'static> = cert.unwrap();
        roots.add(cert).unwrap();
    }
    ClientConfig::builder_with_provider(client_provider(suites))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
}

/// A client config without a client certificate, offering `alpn`.
pub fn client_config(
    ca_pem_path: &Path,
    suites: Option<Vec<SupportedCipherSuite>>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> ClientConfig {
    let mut config = client_builder(ca_pem_path, suites, versions).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A real rustls client speaking HTTP/1.1 or HTTP/2 (by ALPN) to the gateway.
#[derive(Clone)]
pub struct TestClient {
    pub config: Arc<ClientConfig>,
}

/// A buffered response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestClient {
    pub fn trusting(ca: &Path) -> Self {
        Self::with_alpn(ca, &[b"h2", b"http/1.1"])
    }

    pub fn with_alpn(ca: &Path, alpn: &[&[u8]]) -> Self {
        Self {
            config: Arc::new(client_config(ca, None, &[&rustls::version::TLS13], alpn)),
        }
    }

    /// TCP connect + TLS handshake to `localhost`.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = TlsConnector::from(Arc::clone(&self.config));
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    pub async fn get(&self, addr: SocketAddr, path: &str) -> TestResponse {
        self.send(
            addr,
            Request::get(path).body(Full::new(Bytes::new())).unwrap(),
        )
        .await
    }

    /// Sends one request on a fresh connection.
    pub async fn send(&self, addr: SocketAddr, req: Request<Full<Bytes>>) -> TestResponse {
        let tls = self.connect(addr).await.expect("TLS handshake");
        send_on(tls, req).await
    }
}

/// Sends one request on an established TLS stream, by its negotiated ALPN.
pub async fn send_on(tls: TlsStream<TcpStream>, mut req: Request<Full<Bytes>>) -> TestResponse {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let response = if h2 {
        *req.uri_mut() = format!("https://localhost{}", req.uri()).parse().unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    buffered(response).await
}

/// A response with its body read (an unreadable body reads as empty).
pub async fn buffered(response: hyper::Response<hyper::body::Incoming>) -> TestResponse {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    TestResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, check: F) -> bool {
    eventually_every(timeout, Duration::from_millis(20), check).await
}

/// Polls `check` every `every` until it holds or `timeout` passes.
pub async fn eventually_every<F: FnMut() -> bool>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> bool {
    eventually_async(timeout, every, || std::future::ready(check())).await
}

/// Polls an async `check` (a connection, a scrape) every `every` until it
/// holds or `timeout` passes. The only sleep of the polling helpers: the
/// wait between two looks at a real server.
pub async fn eventually_async<F, Fut>(timeout: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// The first available executable named `name` on PATH.
pub fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Starts a loopback upstream and a gateway forwarding to it.
pub async fn gateway_with_upstream(
    tweak: impl FnOnce(&mut Config, &Path),
) -> (TestGateway, upstream::Upstream, SocketAddr) {
    let (upstream_addr, upstream) = upstream::spawn_upstream().await;
    let gw = TestGateway::start(|c, dir| {
        c.upstream.url = Some(format!("http://{upstream_addr}"));
        tweak(c, dir);
    })
    .await;
    (gw, upstream, upstream_addr)
}

impl TestGateway {
    /// A session token for `sub` with `scopes`, minted by the running gateway.
    pub fn token(&self, sub: &str, scopes: &[&str]) -> String {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        let pair = self
            .running
            .sessions()
            .issue(
                sub,
                scopes,
                None,
                clawgate::gateway::session_manager::IssueMethod::Cli,
            )
            .unwrap();
        pair.session_token().to_owned()
    }

    /// The one-time pairing code printed at start-up.
    pub fn pairing_code(&self) -> String {
        self.running
            .sessions()
            .pairing_code()
            .unwrap()
            .reveal()
            .to_owned()
    }

    /// Scrapes until the exposition holds `line`, for at most 5 s, and
    /// returns the last scrape. For what the server counts as it closes a
    /// connection: a worker thread may count it just after the client saw
    /// the close.
    #[allow(dead_code)] // not every test binary scrapes for a line
    pub async fn metrics_with(&self, line: &str) -> String {
        eventually_async(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async { self.metrics_text().await.contains(line) },
        )
        .await;
        self.metrics_text().await
    }

    /// Scrapes the metrics listener.
    pub async fn metrics_text(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.running.metrics_addr().unwrap();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    }
}

/// A request with a bearer token.
pub fn authed(
    method: &str,
    path: &str,
    token: &str,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body.into()))
        .unwrap()
}

/// Fresh replay headers: a 128-bit base64url nonce and the current time.
pub fn replay_headers() -> (String, String) {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut nonce).unwrap();
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (nonce, now.to_string())
}

/// A JSON POST.
pub fn post_json(path: &str, body: &serde_json::Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

thread_local! {
    static CAPTURED: std::cell::RefCell<Option<logs::Logs>> = const { std::cell::RefCell::new(None) };
}

/// Runs `test` on a runtime of its own whose every thread (the test thread,
/// the blocking pool where login and refresh run) logs into a capture of
/// this test alone: a test binary holds many tests, so no global subscriber.
pub fn with_captured_logs<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let logs = logs::Logs::default();
    let dispatch = tracing::Dispatch::new(logs.subscriber());
    let for_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(move || {
            // These threads live and die with this runtime: leaving the
            // default set for their lifetime is the scope wanted.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .unwrap();
    CAPTURED.with(|c| *c.borrow_mut() = Some(logs));
    tracing::dispatcher::with_default(&dispatch, || runtime.block_on(test()));
}

/// The capture of the test running on this thread (inside `with_captured_logs`).
pub fn captured_logs() -> logs::Logs {
    CAPTURED.with(|c| c.borrow().clone().expect("inside with_captured_logs"))
}
