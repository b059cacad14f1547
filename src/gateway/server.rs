//! The accept loop: TCP → TLS 1.3 handshake (with a timeout, metrics and a
//! plain-words log line when it fails) → HTTP/1.1 or HTTP/2, as ALPN agreed → the router.
//! Each admitted connection is handed to one of the `[server] workers`
//! threads (`workers`: one event loop per core) and lives there.
//!
//! The loop never waits for a free slot: a connection over `max_connections`
//! or over its address's `max_connections_per_ip` is closed at accept, before
//! any TLS work, so a full server keeps draining its backlog and cannot be
//! made to queue everyone else behind an attacker. Every connection then has
//! deadlines: its first complete request head within `header_read_timeout`
//! of the handshake (HTTP/2: the preface and a HEADERS frame), and no stretch of
//! `idle_timeout` without a request in progress. Shutdown stops accepting
//! and drains in-flight requests for a grace period.
//!
//! An HTTP/1.1 connection with no request in progress for 250 ms hibernates
//! (`hibernate`): hyper's connection and its buffers are dropped, the task
//! keeps the TLS stream and any bytes hyper had not used, and the client's
//! next bytes build a new hyper connection over the same stream. The
//! deadlines run on across hibernation.

mod activity;
mod client_slots;
mod hibernate;
mod metrics_listener;
mod workers;

pub(crate) use metrics_listener::serve_metrics;
pub(crate) use workers::Workers;
pub(crate) use workers::current as current_worker;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::{Bytes, BytesMut};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use self::activity::{Activity, ConnectionService, Deadlines, Step};
use self::client_slots::{ClientSlot, ClientSlots};
use self::hibernate::{H1Io, HIBERNATE_AFTER};
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
/// drains for `opts.shutdown_grace`. The accept loop runs here; each
/// connection runs on one of `workers`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    opts: ServeOptions,
    metrics: Arc<TlsMetrics>,
    workers: &Workers,
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
        header_read_timeout: opts.header_read_timeout,
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
        // Out of this runtime's reactor: registered here, every readiness
        // event of the socket would be a wake-up sent across threads.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(error) => {
                tracing::debug!(event = "accept_failed", %error, "accepted socket unusable");
                continue;
            }
        };
        let conn = Connection {
            shared: Arc::clone(&shared),
            stopping: stopping.clone(),
        };
        // From here on the connection lives on one worker thread, in its
        // reactor.
        connections.spawn_on(
            async move {
                conn.run(tcp, peer).await;
                drop(admitted);
            },
            workers.next(),
        );
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

    /// Whether ALPN agreed on HTTP/2: `h2` only when the client offered it
    /// (RFC 9113 §3.2: over TLS, HTTP/2 is negotiated by ALPN, never
    /// guessed), HTTP/1.1 otherwise. Choosing here, instead of sniffing the
    /// first bytes, keeps the connection task to the size of the protocol in
    /// use: an idle HTTP/1.1 connection does not carry an HTTP/2
    /// connection's state (issue 12, idle memory).
    fn is_h2(tls: &TlsStream) -> bool {
        tls.get_ref().1.alpn_protocol() == Some(b"h2")
    }

    fn serve_h2(&self, tls: TlsStream, service: ConnectionService) -> HttpConnection {
        HttpConnection::H2(Box::pin(
            self.h2.serve_connection(TokioIo::new(tls), service),
        ))
    }

    /// An HTTP/1.1 connection (upgrades allowed: WebSockets). Its head timer
    /// is `head_timeout` when given (a connection rebuilt after hibernation:
    /// what is left of the head deadline), `header_read_timeout` otherwise.
    fn serve_h1(
        &self,
        io: H1Io,
        service: ConnectionService,
        head_timeout: Option<Duration>,
    ) -> HttpConnection {
        let conn = match head_timeout {
            None => self.h1.serve_connection(io, service),
            Some(left) => {
                let mut h1 = self.h1.clone();
                h1.header_read_timeout(left);
                h1.serve_connection(io, service)
            }
        };
        HttpConnection::H1(Box::new(conn.with_upgrades()))
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
    /// hyper's head timer (HTTP/1.1), restarted after each response.
    header_read_timeout: Duration,
}

/// How [`Connection::drive`] ended.
enum Driven {
    /// The connection is over.
    Done(Result<(), hyper::Error>),
    /// An idle HTTP/1.1 connection stopped between two messages, to
    /// hibernate.
    Hibernate(Box<H1Connection>),
}

struct Connection {
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: std::net::TcpStream, peer: SocketAddr) {
        let _open = self.shared.metrics.connection_opened();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.shared.handshake_timeout;
        // Still non-blocking (tokio set it at accept).
        let mut tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(error) => {
                tracing::debug!(event = "accept_failed", %error, "accepted socket unusable");
                return;
            }
        };
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
        let result = if HttpBuilders::is_h2(&tls) {
            let conn = self.shared.http.serve_h2(tls, service);
            match self.drive(conn, &activity).await {
                Driven::Done(result) => result,
                // Only HTTP/1.1 hibernates.
                Driven::Hibernate(_) => Ok(()),
            }
        } else {
            self.serve_h1(tls, service, &activity).await
        };
        if let Err(error) = result {
            tracing::debug!(event = "connection_error", client = %peer, %error, "connection ended with an error");
        }
    }

    /// Serves HTTP/1.1, hibernating whenever the connection idles between
    /// requests and waking on the client's next bytes.
    async fn serve_h1(
        &mut self,
        tls: TlsStream,
        service: ConnectionService,
        activity: &Arc<Activity>,
    ) -> Result<(), hyper::Error> {
        let mut io = H1Io::new(tls, Bytes::new(), Arc::clone(activity));
        let mut head_timeout = None;
        loop {
            let conn = self.shared.http.serve_h1(io, service.clone(), head_timeout);
            let conn = match self.drive(conn, activity).await {
                Driven::Done(result) => return result,
                Driven::Hibernate(conn) => conn,
            };
            // `None` only after an upgrade, which ends the connection
            // instead of hibernating it.
            let Some(parts) = conn.into_parts() else {
                return Ok(());
            };
            let (tls, saved) = parts.io.into_hibernation(&parts.read_buf);
            drop(parts.read_buf);
            // hyper's head timer starts when a response ends (or at the
            // handshake): the rebuilt connection gets what is left of it.
            let head_deadline = activity
                .quiet_since()
                .unwrap_or_else(tokio::time::Instant::now)
                + self.shared.header_read_timeout;
            let Some((tls, replay)) = self.hibernate(tls, saved, activity, head_deadline).await
            else {
                return Ok(());
            };
            head_timeout =
                Some(head_deadline.saturating_duration_since(tokio::time::Instant::now()));
            io = H1Io::new(tls, replay, Arc::clone(activity));
        }
    }

    /// Waits, holding only the TLS stream and the bytes hyper left unread,
    /// for the client's next byte; returns the stream and the bytes to
    /// replay, or `None` when the connection is over (closed by the client,
    /// by a deadline or by the server's shutdown).
    async fn hibernate(
        &mut self,
        mut tls: TlsStream,
        saved: Bytes,
        activity: &Activity,
        head_deadline: tokio::time::Instant,
    ) -> Option<(TlsStream, Bytes)> {
        use tokio::io::AsyncReadExt as _;
        let _hibernated = self.shared.metrics.hibernating();
        let deadlines = self.shared.deadlines;
        loop {
            let now = tokio::time::Instant::now();
            // The same deadlines as while hyper serves: the first request or
            // idle (counted, as there), and hyper's head timer (not counted,
            // as hyper's own closing is not).
            let wake = match activity.step(deadlines, now) {
                Step::Close(deadline) => {
                    self.shared.metrics.timed_out(deadline);
                    close_tls(tls).await;
                    return None;
                }
                Step::WaitUntil(_) if now >= head_deadline => {
                    close_tls(tls).await;
                    return None;
                }
                Step::WaitUntil(at) => at.min(head_deadline),
            };
            // One byte: the wait holds no read buffer; hyper reads the rest.
            let mut first = [0u8; 1];
            tokio::select! {
                read = tls.read(&mut first) => {
                    return match read {
                        // Invariant: bytes left unread by hyper come first,
                        // then what arrived during the hibernation.
                        Ok(1..) => {
                            let mut replay = BytesMut::with_capacity(saved.len() + 1);
                            replay.extend_from_slice(&saved);
                            replay.extend_from_slice(&first);
                            Some((tls, replay.freeze()))
                        }
                        // The client closed: close our side as hyper would.
                        Ok(0) => {
                            close_tls(tls).await;
                            None
                        }
                        Err(error) => {
                            tracing::debug!(event = "connection_error", %error,
                                "hibernated connection failed");
                            None
                        }
                    };
                }
                () = tokio::time::sleep_until(wake) => {}
                // Server shutdown (or the server gone): nothing is in flight.
                _ = self.stopping.changed() => {
                    close_tls(tls).await;
                    return None;
                }
            }
        }
    }

    /// Polls the connection to its end under its deadlines and the server's
    /// shutdown signal. A connection that never sent a complete request is
    /// dropped at its deadline; an idle one is asked to close (HTTP/2
    /// GOAWAY) and dropped `IDLE_CLOSE_GRACE` later if it has not. An
    /// HTTP/1.1 connection with no request in progress for
    /// `HIBERNATE_AFTER` is handed back to hibernate.
    async fn drive(&mut self, mut conn: HttpConnection, activity: &Activity) -> Driven {
        let deadlines = self.shared.deadlines;
        let h1 = matches!(conn, HttpConnection::H1(_));
        // The first wake-up as `step` gives it: never later than an idle
        // deadline (a request may end before the first-request deadline,
        // and ending one wakes nobody); HTTP/1.1: nor than a hibernation.
        let mut first = deadlines.first_request.min(deadlines.idle);
        if h1 {
            first = first.min(HIBERNATE_AFTER);
        }
        let timer = tokio::time::sleep(first);
        tokio::pin!(timer);
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut conn => {
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
                    return Driven::Done(result);
                }
                () = timer.as_mut() => {
                    let now = tokio::time::Instant::now();
                    if closing {
                        // Invariant: after the close request only a request
                        // in progress keeps the connection; hyper ends it.
                        if !activity.busy() {
                            return Driven::Done(Ok(()));
                        }
                        timer.as_mut().reset(now + deadlines.idle);
                        continue;
                    }
                    match activity.step(deadlines, now) {
                        Step::WaitUntil(at) if h1 => match activity.quiet_since() {
                            // Invariant: hyper is between two messages when
                            // no request is in progress (a head is counted
                            // in the poll that parses it, a response until
                            // its body is dropped), everything it wrote was
                            // flushed and it never began to shut the stream
                            // down: taking its parts then loses no byte in
                            // either direction (a head partly received stays
                            // in its read buffer, handed back).
                            Some(quiet) if now >= quiet + HIBERNATE_AFTER
                                && activity.stream_settled() =>
                            {
                                if let HttpConnection::H1(conn) = conn {
                                    return Driven::Hibernate(conn);
                                }
                                return Driven::Done(Ok(()));
                            }
                            // Quiet, not for long enough yet.
                            Some(quiet) if now < quiet + HIBERNATE_AFTER => {
                                timer.as_mut().reset(at.min(quiet + HIBERNATE_AFTER));
                            }
                            // A request in progress, or a response still
                            // being flushed: look again later.
                            _ => timer.as_mut().reset(at.min(now + HIBERNATE_AFTER)),
                        },
                        Step::WaitUntil(at) => timer.as_mut().reset(at),
                        Step::Close(deadline) => {
                            self.shared.metrics.timed_out(deadline);
                            if deadline == "first_request" {
                                // Nothing was ever asked: nothing to lose.
                                return Driven::Done(Ok(()));
                            }
                            conn.graceful_shutdown();
                            closing = true;
                            timer.as_mut().reset(now + IDLE_CLOSE_GRACE);
                        }
                    }
                }
                changed = self.stopping.changed(), if !closing => {
                    // Server shutdown (or the server gone): finish what is
                    // in flight; `serve` aborts us after the grace period.
                    let _ = changed;
                    conn.graceful_shutdown();
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

type H1Connection = http1::UpgradeableConnection<H1Io, ConnectionService>;
type H2Connection = http2::Connection<TokioIo<TlsStream>, ConnectionService, TokioExecutor>;

/// A served connection, HTTP/1.1 (upgrades allowed: WebSockets) or HTTP/2.
/// Both are boxed, so the connection task stays small: a hibernated
/// HTTP/1.1 connection holds its TLS stream and no hyper state.
enum HttpConnection {
    H1(Box<H1Connection>),
    H2(Pin<Box<H2Connection>>),
}

impl HttpConnection {
    fn graceful_shutdown(&mut self) {
        match self {
            Self::H1(conn) => Pin::new(&mut **conn).graceful_shutdown(),
            Self::H2(conn) => conn.as_mut().graceful_shutdown(),
        }
    }
}

impl Future for HttpConnection {
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::H1(conn) => Pin::new(&mut **conn).poll(cx),
            Self::H2(conn) => conn.as_mut().poll(cx),
        }
    }
}

/// Closes a TLS stream no HTTP connection holds (close_notify, then FIN),
/// bounded so a peer that stopped reading cannot keep the task.
async fn close_tls(mut tls: TlsStream) {
    use tokio::io::AsyncWriteExt as _;
    let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, tls.shutdown()).await;
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
