//! The accept loop: TCP → TLS 1.3 handshake (with a timeout, metrics and a
//! plain-words log line when it fails) → HTTP/1.1 or HTTP/2 by ALPN → the
//! router. A semaphore caps open connections (further ones wait in the
//! kernel backlog); shutdown stops accepting and drains in-flight requests
//! for a grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::gateway::certificate_manager::fingerprint_hex;
use crate::gateway::metrics::TlsMetrics;
use crate::gateway::tls_config::describe_handshake_error;

/// Limits applied per connection.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request head (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Time in-flight requests get after shutdown starts.
    pub shutdown_grace: Duration,
}

/// Facts about the TLS connection a request arrived on, available to
/// handlers as a request extension.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// TCP peer.
    pub peer: SocketAddr,
    /// SHA-256 (lower-case hex) of the client certificate, with mutual TLS.
    pub client_cert_sha256: Option<String>,
}

/// Most HTTP/2 streams one connection may have open at once, so
/// multiplexing cannot multiply a client's share of the server.
const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then
/// drains for `opts.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    opts: ServeOptions,
    metrics: Arc<TlsMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let builder = Arc::new(http_builder(&opts));
    // Every connection task, so the ones left when the grace period ends
    // can be aborted (a detached task would outlive the gateway).
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(event = "accept_failed", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            builder: Arc::clone(&builder),
            metrics: Arc::clone(&metrics),
            handshake_timeout: opts.handshake_timeout,
            watcher: graceful.watcher(),
        };
        connections.spawn(async move {
            conn.run(tcp, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        event = "shutdown_started",
        open = graceful.count(),
        "draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(event = "shutdown_complete", "all connections closed"),
        () = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!(event = "shutdown_grace_expired", open = connections.len(),
                "grace period over; closing remaining connections");
            connections.abort_all();
        }
    }
}

fn http_builder(opts: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

struct Connection {
    acceptor: TlsAcceptor,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    metrics: Arc<TlsMetrics>,
    handshake_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn run(self, tcp: TcpStream, peer: SocketAddr) {
        let _open = self.metrics.connection_opened();
        let started = Instant::now();
        let tls = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                self.log_handshake_failure(&error, peer, started.elapsed());
                return;
            }
            Err(_) => {
                self.metrics.handshake("timeout", started.elapsed());
                tracing::info!(event = "tls_handshake_failed", tls.result = "timeout", client = %peer,
                    "TLS handshake did not complete in time");
                return;
            }
        };
        self.metrics.handshake("ok", started.elapsed());
        let info = ConnectionInfo {
            peer,
            client_cert_sha256: tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| fingerprint_hex(c)),
        };
        let service = self
            .app
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(info.peer));
                req.extensions_mut().insert(info.clone());
                req
            });
        let service = TowerToHyperService::new(service.map_err(|e: Infallible| match e {}));
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(tls), service);
        if let Err(error) = self.watcher.watch(conn.into_owned()).await {
            tracing::debug!(event = "connection_error", client = %peer, %error, "connection ended with an error");
        }
    }

    fn log_handshake_failure(&self, error: &std::io::Error, peer: SocketAddr, elapsed: Duration) {
        let (result, why) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map_or(
                ("io_error", "the connection failed during the TLS handshake"),
                describe_handshake_error,
            );
        self.metrics.handshake(result, elapsed);
        // The operator gets the cause; the client got only a TLS alert.
        tracing::info!(event = "tls_handshake_failed", tls.result = result, client = %peer, detail = %error, "{why}");
    }
}
