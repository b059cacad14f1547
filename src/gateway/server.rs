//! The accept loop: TCP → TLS 1.3 handshake (with a timeout, metrics and a
//! plain-words log line when it fails) → HTTP/1.1 or HTTP/2, as ALPN agreed → the router.
//!
//! The loop never waits for a free slot: a connection over `max_connections`
//! or over its address's `max_connections_per_ip` is closed at accept, before
//! any TLS work, so a full server keeps draining its backlog and cannot be
//! made to queue everyone else behind an attacker. Every connection then has
//! deadlines: its first complete request head within `header_read_timeout`
//! of the handshake (HTTP/2: the preface and a HEADERS frame), and no stretch of
//! `idle_timeout` without a request in progress. Shutdown stops accepting
//! and drains in-flight requests for a grace period.

mod activity;
mod client_slots;
mod metrics_listener;

pub(crate) use metrics_listener::serve_metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use self::activity::{Activity, ConnectionService, Deadlines, Step};
use self::client_slots::{ClientSlot, ClientSlots};
use crate::gateway::certificate_manager::fingerprint_hex;
use crate::gateway::metrics::TlsMetrics;
use crate::gateway::tls_config::describe_handshake_error;

/// Limits applied per connection.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (0: no cap).
    pub max_connections_per_ip: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request head; the first one counts from
    /// the end of the handshake (HTTP/1.1 and HTTP/2).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
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
    let (stop, stopping) = watch::channel(false);
    let admission = Admission {
        slots: Arc::new(Semaphore::new(opts.max_connections)),
        clients: ClientSlots::new(opts.max_connections_per_ip),
        metrics: Arc::clone(&metrics),
    };
    let shared = Arc::new(Shared {
        acceptor: TlsAcceptor::from(tls),
        app,
        http: HttpBuilders::new(&opts),
        metrics,
        handshake_timeout: opts.handshake_timeout,
        deadlines: Deadlines {
            first_request: opts.header_read_timeout,
            idle: opts.idle_timeout,
        },
    });
    // Every connection task, so the ones left when the grace period ends
    // can be aborted (a detached task would outlive the gateway).
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
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
        // Invariant: accept never waits for a slot; a connection without
        // one is closed here, before the handshake costs anything.
        let Some(admitted) = admission.admit(peer) else {
            drop(tcp);
            continue;
        };
        // Responses are written whole by hyper; Nagle would only delay the
        // last segment of each (issue 12). A failure costs latency, not safety.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(event = "set_nodelay_failed", %error, "TCP_NODELAY not set");
        }
        let conn = Connection {
            shared: Arc::clone(&shared),
            stopping: stopping.clone(),
        };
        connections.spawn(async move {
            conn.run(tcp, peer).await;
            drop(admitted);
        });
    }
    drop(listener);
    tracing::info!(
        event = "shutdown_started",
        open = connections.len(),
        "draining connections"
    );
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => tracing::info!(event = "shutdown_complete", "all connections closed"),
        () = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!(event = "shutdown_grace_expired", open = connections.len(),
                "grace period over; closing remaining connections");
            connections.abort_all();
        }
    }
}

/// One HTTP/1.1 and one HTTP/2 server configuration; ALPN picks one per
/// connection.
struct HttpBuilders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl HttpBuilders {
    fn new(opts: &ServeOptions) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .max_buf_size(opts.max_header_bytes.max(8192));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        Self { h1, h2 }
    }

    /// The protocol is the one ALPN agreed on: `h2` only when the client
    /// offered it (RFC 9113 §3.2: over TLS, HTTP/2 is negotiated by ALPN,
    /// never guessed), HTTP/1.1 otherwise. Choosing here, instead of
    /// sniffing the first bytes, keeps the connection task to the size of
    /// the protocol in use: an idle HTTP/1.1 connection does not carry an
    /// HTTP/2 connection's state (issue 12, idle memory).
    fn serve(&self, tls: TlsStream, service: ConnectionService) -> HttpConnection {
        let io = TokioIo::new(tls);
        if io.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
            HttpConnection::H2 {
                conn: Box::pin(self.h2.serve_connection(io, service)),
            }
        } else {
            HttpConnection::H1 {
                conn: self.h1.serve_connection(io, service).with_upgrades(),
            }
        }
    }
}

/// Whether a connection's first byte starts a plain HTTP request rather
/// than a TLS record. A TLS record starts with its content type (0x14 to
/// 0x18, a handshake is 0x16); an HTTP/1 method starts with an upper-case
/// ASCII letter, HTTP/2 prior knowledge with `P` (`PRI * HTTP/2.0`).
fn looks_like_plaintext_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

/// The answer to plain HTTP on the TLS port (what nginx and Caddy do).
const PLAINTEXT_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\
Content-Length: 73\r\n\
\r\n\
This port speaks HTTPS only: use https:// instead of http:// in the URL.\n";

/// Reads what the client sent (so closing does not reset the connection
/// before the answer is read), answers 400 and closes.
async fn refuse_plaintext(tcp: &mut TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = [0u8; 4096];
    let _ = tcp.read(&mut head).await;
    let _ = tcp.write_all(PLAINTEXT_HTTP_RESPONSE).await;
    let _ = tcp.shutdown().await;
}

/// Admission at accept: a global slot and a slot of the client's address.
struct Admission {
    slots: Arc<Semaphore>,
    clients: Arc<ClientSlots>,
    metrics: Arc<TlsMetrics>,
}

impl Admission {
    fn admit(&self, peer: SocketAddr) -> Option<(OwnedSemaphorePermit, ClientSlot)> {
        let Some(client) = self.clients.try_acquire(peer.ip()) else {
            self.refuse("per_ip_limit", peer);
            return None;
        };
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.refuse("server_full", peer);
            return None;
        };
        Some((permit, client))
    }

    fn refuse(&self, reason: &'static str, peer: SocketAddr) {
        self.metrics.refused(reason);
        // Debug only: the volume of these is the attacker's to choose; the
        // metric is the signal.
        tracing::debug!(event = "connection_refused", reason, client = %peer,
            "connection closed at accept");
    }
}

/// What every connection task shares.
struct Shared {
    acceptor: TlsAcceptor,
    app: Router,
    http: HttpBuilders,
    metrics: Arc<TlsMetrics>,
    handshake_timeout: Duration,
    deadlines: Deadlines,
}

struct Connection {
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, peer: SocketAddr) {
        let _open = self.shared.metrics.connection_opened();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.shared.handshake_timeout;
        let mut tcp = tcp;
        // Peek, never read: the byte stays in the socket for rustls.
        let mut first = [0u8; 1];
        if let Ok(Ok(1)) = tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await
            && looks_like_plaintext_http(first[0])
        {
            self.shared
                .metrics
                .handshake("plaintext_http", started.elapsed());
            tracing::info!(event = "tls_handshake_failed", tls.result = "plaintext_http", client = %peer,
                "plain HTTP on the TLS port; answered 400 (use https)");
            let _ = tokio::time::timeout_at(deadline, refuse_plaintext(&mut tcp)).await;
            return;
        }
        let handshake = self.shared.acceptor.accept(tcp);
        let tls = match tokio::time::timeout(self.shared.handshake_timeout, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                self.log_handshake_failure(&error, peer, started.elapsed());
                return;
            }
            Err(_) => {
                self.shared.metrics.handshake("timeout", started.elapsed());
                tracing::info!(event = "tls_handshake_failed", tls.result = "timeout", client = %peer,
                    "TLS handshake did not complete in time");
                return;
            }
        };
        self.shared.metrics.handshake("ok", started.elapsed());
        let info = ConnectionInfo {
            peer,
            client_cert_sha256: tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| fingerprint_hex(c)),
        };
        let activity = Activity::new();
        let service = ConnectionService {
            app: self.shared.app.clone(),
            info,
            activity: Arc::clone(&activity),
        };
        let conn = self.shared.http.serve(tls, service);
        if let Err(error) = self.drive(conn, &activity).await {
            tracing::debug!(event = "connection_error", client = %peer, %error, "connection ended with an error");
        }
    }

    /// Polls the connection to its end under its deadlines and the server's
    /// shutdown signal. A connection that never sent a complete request is
    /// dropped at its deadline; an idle one is asked to close (HTTP/2
    /// GOAWAY) and dropped `IDLE_CLOSE_GRACE` later if it has not.
    async fn drive(
        mut self,
        conn: HttpConnection,
        activity: &Activity,
    ) -> Result<(), hyper::Error> {
        let deadlines = self.shared.deadlines;
        tokio::pin!(conn);
        // The first wake-up as `step` gives it: never later than an idle
        // deadline (a request may end before the first-request deadline,
        // and ending one wakes nobody).
        let timer = tokio::time::sleep(deadlines.first_request.min(deadlines.idle));
        tokio::pin!(timer);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    // hyper's header-read timer has the first-request
                    // deadline's length: when it closed a connection that
                    // never sent a request, count that deadline here (our
                    // own timer would have counted it had it fired first).
                    if !closing
                        && activity.step(deadlines, tokio::time::Instant::now())
                            == Step::Close("first_request")
                    {
                        self.shared.metrics.timed_out("first_request");
                    }
                    return result;
                }
                () = timer.as_mut() => {
                    let now = tokio::time::Instant::now();
                    if closing {
                        // Invariant: after the close request only a request
                        // in progress keeps the connection; hyper ends it.
                        if !activity.busy() {
                            return Ok(());
                        }
                        timer.as_mut().reset(now + deadlines.idle);
                        continue;
                    }
                    match activity.step(deadlines, now) {
                        Step::WaitUntil(at) => timer.as_mut().reset(at),
                        Step::Close(deadline) => {
                            self.shared.metrics.timed_out(deadline);
                            if deadline == "first_request" {
                                // Nothing was ever asked: nothing to lose.
                                return Ok(());
                            }
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                            timer.as_mut().reset(now + IDLE_CLOSE_GRACE);
                        }
                    }
                }
                changed = self.stopping.changed(), if !closing => {
                    // Server shutdown (or the server gone): finish what is
                    // in flight; `serve` aborts us after the grace period.
                    let _ = changed;
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    timer.as_mut().reset(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
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
        self.shared.metrics.handshake(result, elapsed);
        // The operator gets the cause; the client got only a TLS alert.
        tracing::info!(event = "tls_handshake_failed", tls.result = result, client = %peer, detail = %error, "{why}");
    }
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

pin_project_lite::pin_project! {
    /// A served connection, HTTP/1.1 (upgrades allowed: WebSockets) or
    /// HTTP/2. The HTTP/2 state is boxed: it is large and the rarer case.
    #[project = HttpConnectionProj]
    enum HttpConnection {
        H1 { #[pin] conn: http1::UpgradeableConnection<TokioIo<TlsStream>, ConnectionService> },
        H2 { conn: Pin<Box<http2::Connection<TokioIo<TlsStream>, ConnectionService, TokioExecutor>>> },
    }
}

impl HttpConnection {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            HttpConnectionProj::H1 { conn } => conn.graceful_shutdown(),
            HttpConnectionProj::H2 { conn } => conn.as_mut().graceful_shutdown(),
        }
    }
}

impl Future for HttpConnection {
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HttpConnectionProj::H1 { conn } => conn.poll(cx),
            HttpConnectionProj::H2 { conn } => conn.as_mut().poll(cx),
        }
    }
}

/// Most HTTP/2 streams one connection may have open at once, so
/// multiplexing cannot multiply a client's share of the server.
const MAX_CONCURRENT_STREAMS: u32 = 128;

/// HTTP/2 PING interval and the time allowed for its answer: a peer that
/// stops answering is closed within 30 + 20 = 50 s, even with a stream
/// open. (Answering PINGs does not count as a request: an HTTP/2 connection
/// with no stream open is still closed at `idle_timeout`.)
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an idle connection asked to close (HTTP/2: GOAWAY, then a PING
/// round trip) may take before it is dropped; a request that raced the
/// GOAWAY still finishes, only a silent peer is cut.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(2);
