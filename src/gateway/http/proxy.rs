//! Upstream forwarding: the request an authenticated client sent, re-issued
//! to the configured `http://` upstream over HTTP/1.1, and the answer streamed
//! back.
//!
//! What the upstream sees:
//! - method, path and query, end-to-end headers and the body, streamed
//!   without buffering; `Host` is the upstream's own authority (local
//!   services often check it against DNS rebinding), the client's host is in
//!   `X-Forwarded-Host`;
//! - no hop-by-hop header (RFC 9110 §7.6.1), no `Expect` (answered here);
//! - `X-Forwarded-For`/`-Proto`/`-Host` by the rules on [`Proxy::forward`];
//! - `X-Clawgate-Subject`, `-Session`, `-Scopes`, `-Client-Cert-Sha256` from
//!   the verified identity, after every client-sent `x-clawgate-*` is gone,
//!   also under look-alike names (`X_Clawgate_Subject`): client field names
//!   with `_` are dropped unless `allow_underscores_in_headers`, and those
//!   an upstream would read as a gateway field always are;
//! - no `Authorization` unless `danger_forward_authorization`.
//!
//! What the client sees: the upstream's status, headers minus hop-by-hop and
//! minus `Strict-Transport-Security` (the gateway's header layer sets it), and
//! the body frame by frame as the upstream produces it (SSE works).
//!
//! WebSockets are proxied over HTTP/1.1 only: an `Upgrade: websocket`
//! request is forwarded, and on `101` the two upgraded connections are
//! spliced byte for byte. RFC 8441 (WebSockets over HTTP/2) is not supported;
//! the TLS listener offers `http/1.1` by ALPN and browsers fall back to it
//! for WebSockets when the server does not enable extended CONNECT.
//!
//! A session that ends (expiry or revocation, `ProxyContext::session_end`)
//! ends what is still open: a response head not yet received is abandoned
//! (`SessionEnded`), a response body still streaming is aborted (the client
//! sees an incomplete message), and a spliced WebSocket is closed on both
//! sides with a TLS/TCP shutdown. No WebSocket close frame is sent: the
//! splice is byte-level and a frame may be half written. The end is watched
//! from the moment the upstream makes the request wait (50 ms for the head,
//! the first body read that finds no data; a WebSocket at once), so a quick
//! answer never arms the watch.
//!
//! `response_timeout` runs from dispatch until the response head arrives, so
//! it includes the time the upstream spends reading the request body.

pub(super) mod headers;
mod streams;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;

use self::headers::RequestRewrite;
use super::access_log::AccessSlot;
use crate::config::{ServerConfig, UpstreamConfig, UpstreamUrl};
use crate::gateway::metrics::{UpstreamErrorKind, UpstreamMetrics};
use crate::gateway::server::current_worker;

/// How long an upstream may take before the session's end is watched (a
/// response head not yet received, a body that is waiting for data): the
/// most a revocation waits to cut a request already admitted.
const ARM_SESSION_END: Duration = Duration::from_millis(50);

/// A future that resolves when the session behind a request ends.
pub type SessionEnd = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The verified identity a request is forwarded as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardIdentity {
    /// The token's `sub`, sent as `X-Clawgate-Subject`.
    pub subject: String,
    /// The session id (`jti`), sent as `X-Clawgate-Session`.
    pub session_id: String,
    /// Granted scopes, sent space-separated as `X-Clawgate-Scopes`.
    pub scopes: Vec<String>,
    /// SHA-256 (hex) of the client certificate, sent as `X-Clawgate-Client-Cert-Sha256`.
    pub client_cert_fingerprint: Option<String>,
}

/// What the caller knows about the request besides the request itself.
pub struct ProxyContext {
    /// TCP peer of the client connection.
    pub peer: SocketAddr,
    /// The verified identity; `None` for configured public paths.
    pub identity: Option<ForwardIdentity>,
    /// Resolves when the session expires or is revoked; open streams end then.
    pub session_end: Option<SessionEnd>,
}

impl fmt::Debug for ProxyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyContext")
            .field("peer", &self.peer)
            .field("identity", &self.identity)
            .field("session_end", &self.session_end.is_some())
            .finish()
    }
}

/// Why a request could not be forwarded. Display texts are fixed, generic
/// sentences; causes are kept as sources for the log only. The HTTP answer
/// to each is in `http::error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The upstream refused the connection, or connecting failed or timed out.
    #[error("the upstream service is unavailable")]
    UpstreamUnavailable(#[source] hyper_util::client::legacy::Error),
    /// No response head arrived within `response_timeout`.
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    /// The upstream closed the connection or sent something that is not a
    /// valid response (including a `101` nobody asked for).
    #[error("the upstream service sent an invalid response")]
    BadUpstreamResponse(#[source] Option<hyper_util::client::legacy::Error>),
    /// The request cannot be forwarded as sent (CONNECT, `*`, bad URI).
    #[error("the request cannot be forwarded")]
    InvalidRequest,
    /// The request body exceeded the configured limit while streaming.
    #[error("the request body is too large")]
    PayloadTooLarge(#[source] hyper_util::client::legacy::Error),
    /// Reading the client's request body failed while forwarding it.
    #[error("the request body could not be read")]
    RequestBody(#[source] hyper_util::client::legacy::Error),
    /// The identity holds a byte that cannot appear in a header (CR, LF, NUL).
    #[error("the session identity cannot be forwarded")]
    IdentityNotRepresentable,
    /// The session ended before the upstream answered.
    #[error("the session has ended")]
    SessionEnded,
}

impl ProxyError {
    /// The `kind` label of `clawgate_upstream_errors_total`.
    pub fn kind(&self) -> UpstreamErrorKind {
        use UpstreamErrorKind as K;
        match self {
            Self::UpstreamUnavailable(_) => K::Connect,
            Self::UpstreamTimeout => K::Timeout,
            Self::BadUpstreamResponse(_) => K::BadResponse,
            Self::PayloadTooLarge(_) | Self::RequestBody(_) => K::RequestBody,
            Self::InvalidRequest | Self::IdentityNotRepresentable => K::InvalidRequest,
            Self::SessionEnded => K::SessionEnded,
        }
    }

    /// The stable code for logs and the JSON body's `error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::IdentityNotRepresentable => "internal_error",
            Self::UpstreamUnavailable(_) => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::BadUpstreamResponse(_) => "bad_upstream_response",
            Self::InvalidRequest | Self::RequestBody(_) => "invalid_request",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::SessionEnded => "invalid_token",
        }
    }
}

/// The forwarding engine. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
    metrics: Option<Arc<UpstreamMetrics>>,
}

struct Inner {
    /// One pool per worker thread (`server::current_worker`), and slot 0
    /// for any other thread: a pooled upstream connection is driven by the
    /// thread whose requests use it, never woken across threads.
    clients: Box<[Client<HttpConnector, Body>]>,
    authority: Authority,
    /// `Host` sent upstream: the upstream's own authority.
    host: HeaderValue,
    response_timeout: Duration,
    forward_authorization: bool,
    trusted_proxies: Vec<IpAddr>,
    /// `[server] allow_underscores_in_headers`.
    allow_underscores: bool,
    /// Set when the gateway stops: WebSocket tunnels (which no longer
    /// belong to an HTTP connection the server could drain) close then.
    closing: watch::Sender<bool>,
}

impl Proxy {
    /// Builds the proxy for `url` (parsed and checked by the configuration:
    /// [`UpstreamConfig::upstream_url`]). From `upstream`: the timeouts,
    /// public paths and `danger_forward_authorization`; from `server`:
    /// `trusted_proxies` and `allow_underscores_in_headers`.
    pub fn new(url: &UpstreamUrl, upstream: &UpstreamConfig, server: &ServerConfig) -> Self {
        let host = url.host_header().clone();
        let authority = url.authority().clone();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(upstream.connect_timeout));
        connector.set_nodelay(true);
        let clients = (0..=server.worker_threads())
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .build(connector.clone())
            })
            .collect();
        let inner = Inner {
            clients,
            authority,
            host,
            response_timeout: upstream.response_timeout,
            forward_authorization: upstream.danger_forward_authorization,
            trusted_proxies: server
                .trusted_proxies
                .iter()
                .map(IpAddr::to_canonical)
                .collect(),
            allow_underscores: server.allow_underscores_in_headers,
            closing: watch::Sender::new(false),
        };
        Self {
            inner: Arc::new(inner),
            metrics: None,
        }
    }

    /// The same proxy, recording latency and failures in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<UpstreamMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Closes every open WebSocket tunnel, and any opened later: for
    /// gateway shutdown, once the server has stopped accepting. Returns
    /// when they have closed (each has `CLOSE_GRACE` to say goodbye).
    pub async fn close_tunnels(&self) {
        self.inner.closing.send_replace(true);
        // Every tunnel holds a receiver until it has shut both sides down.
        let _ = tokio::time::timeout(
            streams::CLOSE_GRACE + Duration::from_millis(100),
            self.inner.closing.closed(),
        )
        .await;
    }

    /// This thread's upstream pool.
    fn client(&self) -> &Client<HttpConnector, Body> {
        let clients = &self.inner.clients;
        &clients[current_worker() % clients.len()]
    }

    /// Forwards `req` upstream and returns the upstream's response.
    ///
    /// `X-Forwarded-For`: a peer in `trusted_proxies` has its address appended
    /// to the client's value, any other peer's replaces it. `X-Forwarded-Proto`
    /// (`https`) and `X-Forwarded-Host` (the request's host) are set unless a
    /// trusted peer sent them. Untrusted peers' `X-Forwarded-*`, `Forwarded`
    /// and `X-Real-IP` are dropped. Client fields whose name holds `_` are
    /// dropped (unless `allow_underscores_in_headers`), and so are those
    /// read as a gateway field with `_` as `-` in any case. Failures are logged (`tracing::warn!`,
    /// fields `error.code`, `upstream`, `error.detail`; never headers or bodies).
    pub async fn forward(&self, req: Request, ctx: ProxyContext) -> Result<Response, ProxyError> {
        let slot = req.extensions().get::<AccessSlot>().cloned();
        let started = std::time::Instant::now();
        let result = self.forward_inner(req, ctx).await;
        let took = started.elapsed();
        if let Some(slot) = slot {
            slot.set_upstream(took);
        }
        if let Some(metrics) = &self.metrics {
            match &result {
                Ok(_) => metrics.answered(took),
                Err(err) => metrics.failed(err.kind()),
            }
        }
        if let Err(err) = &result {
            tracing::warn!(
                event = "upstream_failed",
                error.code = err.code(),
                upstream = %self.inner.authority,
                error.detail = %ErrorChain(err),
                "upstream forwarding failed"
            );
        }
        result
    }

    async fn forward_inner(
        &self,
        mut req: Request,
        ctx: ProxyContext,
    ) -> Result<Response, ProxyError> {
        let websocket = headers::is_websocket_request(req.method(), req.version(), req.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (upstream_req, offered_bearer) =
            self.upstream_request(req, ctx.peer, ctx.identity.as_ref(), websocket)?;
        let (response, session_end) = self.response_head(upstream_req, ctx.session_end).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = response.into_parts();
            parts.extensions.clear();
            headers::rewrite_response(&mut parts.headers);
            let body = streams::session_bound(body, session_end);
            return Ok(Response::from_parts(parts, body));
        }
        match client_upgrade {
            Some(client) if headers::upgrades_to_websocket(response.headers()) => {
                Ok(self.finish_upgrade(response, client, offered_bearer, session_end))
            }
            _ => Err(ProxyError::BadUpstreamResponse(None)),
        }
    }

    /// Rewrites the client's request for the upstream; also says whether the
    /// client offered the `clawgate.bearer` WebSocket subprotocol.
    fn upstream_request(
        &self,
        req: Request,
        peer: SocketAddr,
        identity: Option<&ForwardIdentity>,
        websocket: bool,
    ) -> Result<(http::Request<Body>, bool), ProxyError> {
        let (parts, body) = req.into_parts();
        let uri = self.upstream_uri(&parts.method, &parts.uri)?;
        // The target's authority first: HTTP/2 `:authority` (which the
        // request-target check made agree with any Host), and for an
        // absolute-form HTTP/1.1 target the Host field must be ignored
        // (RFC 9112 §3.2.2).
        let client_host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| parts.headers.get(header::HOST).cloned());
        let peer = peer.ip().to_canonical();
        let rewrite = RequestRewrite {
            peer,
            trusted_peer: self.inner.trusted_proxies.contains(&peer),
            client_host,
            identity,
            forward_authorization: self.inner.forward_authorization,
            websocket,
            upstream_host: self.inner.host.clone(),
            allow_underscores: self.inner.allow_underscores,
        };
        let mut headers = parts.headers;
        let offered_bearer = headers::rewrite_request(&mut headers, rewrite)?;

        let mut out = http::Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;
        Ok((out, offered_bearer))
    }

    fn upstream_uri(&self, method: &Method, uri: &Uri) -> Result<Uri, ProxyError> {
        if method == Method::CONNECT {
            return Err(ProxyError::InvalidRequest);
        }
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        if !path_and_query.starts_with('/') {
            return Err(ProxyError::InvalidRequest);
        }
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.inner.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| ProxyError::InvalidRequest)
    }

    /// Sends the request and waits for the response head, bounded by
    /// `response_timeout` and by the session's end.
    async fn response_head(
        &self,
        req: http::Request<Body>,
        session_end: Option<SessionEnd>,
    ) -> Result<(http::Response<Incoming>, Option<SessionEnd>), ProxyError> {
        let timeout = self.inner.response_timeout;
        let request = self.client().request(req);
        let Some(mut end) = session_end else {
            return Ok((
                classify(tokio::time::timeout(timeout, request).await)?,
                None,
            ));
        };
        // The session was valid when the request was admitted; its end is
        // watched only once the upstream has taken `ARM_SESSION_END`. Most
        // answers come sooner and never pay for the watch (a revocation
        // subscription, a store lookup and a timer). Arming checks the
        // store first, so a revocation in the meantime still cuts the
        // request then. One timer either way: this one stands in for
        // `response_timeout` until it fires.
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::pin!(request);
        if let Ok(result) = tokio::time::timeout(ARM_SESSION_END.min(timeout), &mut request).await {
            return Ok((classify(Ok(result))?, Some(end)));
        }
        tokio::select! {
            result = tokio::time::timeout_at(deadline, request) => Ok((classify(result)?, Some(end))),
            () = &mut end => Err(ProxyError::SessionEnded),
        }
    }

    fn finish_upgrade(
        &self,
        mut response: http::Response<Incoming>,
        client: OnUpgrade,
        offered_bearer: bool,
        session_end: Option<SessionEnd>,
    ) -> Response {
        let upstream = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        parts.extensions.clear();
        headers::rewrite_upgrade_response(&mut parts.headers, offered_bearer);
        let authority = self.inner.authority.clone();
        let closing = self.inner.closing.subscribe();
        tokio::spawn(streams::splice(
            client,
            upstream,
            session_end,
            closing,
            authority,
        ));
        Response::from_parts(parts, Body::empty())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.inner.authority)
            .finish_non_exhaustive()
    }
}

fn classify(
    result: Result<
        Result<http::Response<Incoming>, hyper_util::client::legacy::Error>,
        tokio::time::error::Elapsed,
    >,
) -> Result<http::Response<Incoming>, ProxyError> {
    let err = match result {
        Ok(Ok(response)) => return Ok(response),
        Ok(Err(err)) => err,
        Err(_) => return Err(ProxyError::UpstreamTimeout),
    };
    if err.is_connect() {
        Err(ProxyError::UpstreamUnavailable(err))
    } else if find_source::<http_body_util::LengthLimitError>(&err).is_some() {
        Err(ProxyError::PayloadTooLarge(err))
    } else if find_source::<hyper::Error>(&err).is_some_and(hyper::Error::is_user) {
        Err(ProxyError::RequestBody(err))
    } else {
        Err(ProxyError::BadUpstreamResponse(Some(err)))
    }
}

fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Displays an error and its sources on one line, for the log only.
struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Below common upstream keep-alive timeouts (60 s+), so the pool rarely
/// picks a connection the upstream is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
