//! The bearer-token tower layer, usable on its own in another axum app.
//!
//! Per request, after the public-path bypass ([`PublicPaths`]), three named
//! steps:
//! 1. **authenticate**: `Authorization: Bearer v4.public.…` (or, for a
//!    browser WebSocket, `Sec-WebSocket-Protocol: clawgate.bearer, <token>`)
//!    → [`SessionManager::authenticate`] (signature + claims, then the
//!    in-memory revocation check; no I/O). Tokens are never read from the
//!    query string: URLs end up in access logs (PITFALLS P3).
//! 2. **confirm the binding** ([`BindingStep`], which `/auth/refresh` runs
//!    too): a bound token (`cnf`) is checked always, whatever the `[auth]
//!    binding` policy: `cnf.x5t#S256` against the connection's client
//!    certificate, `cnf.kpid` against the `Clawgate-Proof` header
//!    (`binding::ProofChecker`).
//! 3. **check replay** on unsafe methods, unless a verified proof's signed
//!    nonce already did (the spent proof is then removed from the request).
//!    In cluster mode a nonce (or proof `jti`) the local cache accepted is
//!    then claimed in Redis, one call bounded by `command_timeout`: only
//!    those requests wait, and no answer is a 503 (fail closed).
//!
//! The verified [`Session`] then goes into the request extensions.
//!
//! Rejections follow RFC 6750 and never echo the token.

mod public_paths;

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use http::request::Parts;
use http::{HeaderMap, Uri, header};
use tower::{Layer, Service};

use super::access_log::AccessSlot;
use super::error::{AuthRejection, ErrorResponse};
use crate::clock::Clock;
use crate::config::ReplayConfig;
use crate::gateway::metrics::{BindingMetrics, ReplayMetrics, TokenMetrics};
use crate::gateway::replay_protection::{FleetNonce, NonceOwner, ReplayError, ReplayGuard};
use crate::gateway::server::ConnectionInfo;
use crate::gateway::session_manager::binding::{
    BindingError, Confirmed, PROOF_HEADER, Presented, ProofChecker, confirm_proof_nonce,
};
use crate::gateway::session_manager::{Session, SessionError, SessionManager, sid_prefix};
use crate::gateway::session_token::VerifiedClaims;

pub use self::public_paths::PublicPaths;

/// Subprotocol marker a browser WebSocket client offers before its token.
pub const WS_BEARER_PROTOCOL: &str = "clawgate.bearer";
/// Header carrying the replay nonce.
pub const NONCE_HEADER: &str = "x-request-nonce";
/// Header carrying the replay timestamp.
pub const TIMESTAMP_HEADER: &str = "x-request-timestamp";

/// Builds [`BearerAuth`] services.
#[derive(Clone)]
pub struct BearerAuthLayer {
    shared: Arc<Steps>,
}

/// Options of a [`BearerAuthLayer`]; [`Self::build`] makes the layer.
/// Cloning copies the configuration, so one set of options can make layers
/// that differ in one setting (the gateway's local routes and upstream).
#[derive(Clone)]
pub struct BearerAuthOptions {
    sessions: Arc<SessionManager>,
    replay: Option<Arc<ReplayGuard>>,
    public: PublicPaths,
    proofs: Option<Arc<ProofChecker>>,
    token_metrics: Option<Arc<TokenMetrics>>,
    replay_metrics: Option<Arc<ReplayMetrics>>,
    binding_metrics: Option<Arc<BindingMetrics>>,
    clock: Arc<dyn Clock>,
}

impl BearerAuthLayer {
    /// Starts a layer that requires a valid session on every request.
    /// Bound tokens are always checked; their proof nonces go to a guard of
    /// the layer's own (default `[replay]` window and capacity) unless
    /// [`BearerAuthOptions::proofs`] shares one.
    pub fn builder(sessions: Arc<SessionManager>, clock: Arc<dyn Clock>) -> BearerAuthOptions {
        BearerAuthOptions {
            sessions,
            replay: None,
            public: PublicPaths::default(),
            proofs: None,
            token_metrics: None,
            replay_metrics: None,
            binding_metrics: None,
            clock,
        }
    }
}

impl BearerAuthOptions {
    /// Also requires replay headers on the guard's unsafe methods.
    pub fn replay(mut self, guard: Arc<ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }

    /// Lets the `public` paths through without a token.
    pub fn public_paths(mut self, public: PublicPaths) -> Self {
        self.public = public;
        self
    }

    /// Records validations and replay rejections.
    pub fn metrics(mut self, tokens: Arc<TokenMetrics>, replay: Arc<ReplayMetrics>) -> Self {
        self.token_metrics = Some(tokens);
        self.replay_metrics = Some(replay);
        self
    }

    /// Checks proofs of bound sessions with `checker` (share one, and its
    /// nonce cache, between every layer and `/auth/refresh`).
    pub fn proofs(mut self, checker: Arc<ProofChecker>) -> Self {
        self.proofs = Some(checker);
        self
    }

    /// Records binding checks and rejections.
    pub fn binding_metrics(mut self, binding: Arc<BindingMetrics>) -> Self {
        self.binding_metrics = Some(binding);
        self
    }

    /// The layer.
    pub fn build(self) -> BearerAuthLayer {
        let proofs = self.proofs.unwrap_or_else(|| {
            let own = ReplayGuard::new(&ReplayConfig::default(), self.sessions.policy().leeway);
            Arc::new(ProofChecker::new(Arc::new(own)))
        });
        let steps = Steps {
            sessions: self.sessions,
            public: self.public,
            binding: BindingStep::new(proofs, self.binding_metrics),
            replay: self.replay,
            token_metrics: self.token_metrics,
            replay_metrics: self.replay_metrics,
            clock: self.clock,
        };
        BearerAuthLayer {
            shared: Arc::new(steps),
        }
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service built by [`BearerAuthLayer`].
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Steps>,
}

/// The future of a request that waits for the fleet's answer on its nonce
/// (cluster mode only).
type FleetFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for BearerAuth<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, Either<S::Future, FleetFuture>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match self.shared.check(&mut req) {
            // Standalone (and every request without a nonce to share): the
            // decision is taken here, no await added.
            Ok(None) => Either::Right(Either::Left(self.inner.call(req))),
            Ok(Some(pending)) => {
                // The service that was made ready goes into the future; a
                // clone takes its place (the usual tower pattern).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = Arc::clone(&self.shared);
                Either::Right(Either::Right(Box::pin(async move {
                    match shared.finish(pending, &mut req).await {
                        Ok(()) => inner.call(req).await,
                        Err(rejection) => Ok(ErrorResponse::from(&rejection).into_response()),
                    }
                })))
            }
            Err(rejection) => {
                let response = ErrorResponse::from(&rejection).into_response();
                Either::Left(ready(Ok(response)))
            }
        }
    }
}

/// The binding step, written once: the bearer layer runs it on every
/// request, `/auth/refresh` on the refresh token. A bound token's `cnf`
/// against what the request presents (nothing for an unbound token); the
/// check is timed and counted, and a rejection logged.
#[derive(Clone)]
pub struct BindingStep {
    proofs: Arc<ProofChecker>,
    metrics: Option<Arc<BindingMetrics>>,
}

impl BindingStep {
    /// A step spending proof nonces through `proofs`, recording into `metrics`.
    pub fn new(proofs: Arc<ProofChecker>, metrics: Option<Arc<BindingMetrics>>) -> Self {
        Self { proofs, metrics }
    }

    /// Confirms `claims`' binding against what the request presents at
    /// `now_unix`, up to the local nonce cache: either the answer, or
    /// (cluster mode, a verified proof) the nonce the fleet must confirm
    /// with [`finish`](Self::finish). `presented` runs only for a bound
    /// token, and its error (an unreadable proof header) counts as a
    /// failed check.
    pub fn begin<'p>(
        &self,
        claims: &VerifiedClaims,
        presented: impl FnOnce() -> Result<Presented<'p>, BindingError>,
        now_unix: u64,
    ) -> Result<Begun, BindingError> {
        let Some(cnf) = claims.cnf() else {
            return Ok(Begun::Done(Confirmed::default()));
        };
        let started = Instant::now();
        let owner = NonceOwner {
            session_id: claims.sid(),
            subject: Some(claims.sub()),
        };
        let result = presented().and_then(|presented| {
            self.proofs
                .begin_for(Some(cnf), owner, &presented, now_unix)
        });
        match result {
            Ok((confirmed, Some(nonce))) => Ok(Begun::Fleet(PendingProof {
                nonce,
                confirmed,
                started,
            })),
            Ok((confirmed, None)) => self
                .settle(Ok(confirmed), started, claims.sub())
                .map(Begun::Done),
            Err(e) => self.settle(Err(e), started, claims.sub()).map(Begun::Done),
        }
    }

    /// Asks the fleet about a verified proof's nonce; records and logs the
    /// outcome as [`begin`](Self::begin) does. `sub` is for the log.
    pub async fn finish(
        &self,
        pending: PendingProof,
        sub: &str,
    ) -> Result<Confirmed, BindingError> {
        let result = confirm_proof_nonce(pending.nonce)
            .await
            .map(|()| pending.confirmed);
        self.settle(result, pending.started, sub)
    }

    fn settle(
        &self,
        result: Result<Confirmed, BindingError>,
        started: Instant,
        sub: &str,
    ) -> Result<Confirmed, BindingError> {
        if let Some(m) = &self.metrics {
            record_binding(m, &result, started.elapsed());
        }
        result.inspect_err(|e| {
            tracing::info!(
                event = "binding_rejected",
                reason = e.code(),
                sub = %sub,
                "bound token presented without proof of its binding"
            );
        })
    }
}

/// What [`BindingStep::begin`] established.
#[derive(Debug)]
pub enum Begun {
    /// The binding is settled (standalone, or nothing for the fleet).
    Done(Confirmed),
    /// Cluster mode: a verified proof whose nonce the fleet must confirm.
    Fleet(PendingProof),
}

/// A verified proof whose nonce the fleet still has to confirm.
#[derive(Debug)]
pub struct PendingProof {
    nonce: FleetNonce,
    confirmed: Confirmed,
    started: Instant,
}

/// A request accepted locally whose nonce (replay headers or a proof's
/// `jti`) the fleet must still confirm.
struct Pending {
    nonce: PendingNonce,
    session: Session,
    client: ClientAddr,
}

enum PendingNonce {
    Proof(PendingProof),
    Headers(FleetNonce),
}

/// A built [`BearerAuthLayer`]: the steps every request goes through.
struct Steps {
    sessions: Arc<SessionManager>,
    public: PublicPaths,
    binding: BindingStep,
    replay: Option<Arc<ReplayGuard>>,
    token_metrics: Option<Arc<TokenMetrics>>,
    replay_metrics: Option<Arc<ReplayMetrics>>,
    clock: Arc<dyn Clock>,
}

impl Steps {
    /// Order: public-path bypass → authenticate (credentials, signature and
    /// claims, revocation) → confirm the binding → check replay. Binding and
    /// replay run last so unauthenticated traffic can never fill the nonce
    /// cache.
    ///
    /// `Ok(None)`: accepted. `Ok(Some(_))` (cluster mode only): accepted
    /// locally, and the nonce must still be confirmed by the fleet
    /// ([`finish`](Self::finish)) before the request goes on.
    fn check(&self, req: &mut Request) -> Result<Option<Pending>, AuthRejection> {
        if self.public.matches(req.uri().path()) {
            return Ok(None);
        }
        let client = client_addr(req);
        let token = bearer_token(req.headers())?.ok_or(AuthRejection::MissingToken)?;
        let session = self.authenticate(token, client)?;
        let fleet = match self.confirm(req, token, &session)? {
            // A verified proof's signed nonce and time replace the plain
            // headers.
            Begun::Done(confirmed) if confirmed.proof_verified => {
                req.headers_mut().remove(PROOF_HEADER);
                None
            }
            Begun::Fleet(pending) => {
                req.headers_mut().remove(PROOF_HEADER);
                Some(PendingNonce::Proof(pending))
            }
            Begun::Done(_) => self
                .check_replay(req, &session, client)?
                .map(PendingNonce::Headers),
        };
        if let Some(nonce) = fleet {
            return Ok(Some(Pending {
                nonce,
                session,
                client,
            }));
        }
        self.accept(req, session, client);
        Ok(None)
    }

    /// Cluster mode: the fleet's answer on the nonce `check` accepted
    /// locally. A replay seen by another replica is refused exactly as a
    /// local one; no answer within `command_timeout` is a 503 (fail
    /// closed: a replay control that silently opens is worse).
    async fn finish(&self, pending: Pending, req: &mut Request) -> Result<(), AuthRejection> {
        let Pending {
            nonce,
            session,
            client,
        } = pending;
        match nonce {
            PendingNonce::Proof(proof) => {
                self.binding
                    .finish(proof, session.subject())
                    .await
                    .map_err(AuthRejection::Binding)?;
            }
            PendingNonce::Headers(nonce) => {
                crate::gateway::replay_protection::confirm_fleet(nonce)
                    .await
                    .map_err(|e| self.replay_rejected(e, &session, client))?;
            }
        }
        self.accept(req, session, client);
        Ok(())
    }

    /// The request passed every step: the session goes into its extensions.
    fn accept(&self, req: &mut Request, session: Session, client: ClientAddr) {
        tracing::debug!(
            event = "auth_accepted",
            sub = %session.subject(),
            sid_prefix = sid_prefix(session.session_id()),
            client = %client,
            "bearer token accepted"
        );
        let session = Arc::new(session);
        if let Some(slot) = req.extensions().get::<AccessSlot>() {
            slot.set_session(&session);
        }
        req.extensions_mut().insert(session);
    }

    /// Step 1: the token's signature and claims, then the in-memory
    /// revocation check. The precise reason goes to metrics and the log;
    /// the client only sees `invalid_token`.
    fn authenticate(&self, token: &str, client: ClientAddr) -> Result<Session, AuthRejection> {
        let started = Instant::now();
        let result = self.sessions.authenticate(token);
        let reason = |e: &SessionError| match e {
            SessionError::InvalidToken(t) => t.code(),
            other => other.code(),
        };
        if let Some(m) = &self.token_metrics {
            let label = result.as_ref().map_or_else(reason, |_| "ok");
            m.validation(label, started.elapsed());
        }
        result.map_err(|e| {
            let reason = reason(&e);
            tracing::info!(event = "auth_rejected", reason, client = %client, "bearer token rejected");
            AuthRejection::InvalidToken
        })
    }

    /// Step 2: the binding of a bound token, against this request.
    fn confirm(
        &self,
        req: &Request,
        token: &str,
        session: &Session,
    ) -> Result<Begun, AuthRejection> {
        let presented = || {
            let conn = req.extensions().get::<ConnectionInfo>();
            Ok(Presented {
                method: req.method().as_str(),
                uri: request_target(req.uri()),
                token,
                proof: proof_header(req.headers())?,
                client_cert_sha256: conn.and_then(|c| c.client_cert_sha256.as_deref()),
            })
        };
        self.binding
            .begin(session.claims(), presented, self.clock.unix_now())
            .map_err(AuthRejection::Binding)
    }

    /// Step 3: the replay headers, on the guard's unsafe methods (when the
    /// layer has a guard and no proof already spent a nonce).
    fn check_replay(
        &self,
        req: &Request,
        session: &Session,
        client: ClientAddr,
    ) -> Result<Option<FleetNonce>, AuthRejection> {
        let Some(guard) = self
            .replay
            .as_ref()
            .filter(|g| g.applies_to(req.method().as_str()))
        else {
            return Ok(None);
        };
        let headers = req.headers();
        let nonce = headers.get(NONCE_HEADER).map(|v| v.as_bytes());
        let timestamp = headers.get(TIMESTAMP_HEADER).map(|v| v.as_bytes());
        let now = self.clock.unix_now();
        guard
            .begin_bytes_for(nonce_owner(session), nonce, timestamp, now)
            .map_err(|e| self.replay_rejected(e, session, client))
    }

    /// Counts and logs a replay refusal.
    fn replay_rejected(
        &self,
        e: ReplayError,
        session: &Session,
        client: ClientAddr,
    ) -> AuthRejection {
        if let Some(m) = &self.replay_metrics {
            m.rejected(e.code());
        }
        tracing::info!(
            event = "replay_rejected",
            reason = e.code(),
            client = %client,
            sid_prefix = sid_prefix(session.session_id()),
            "replay protection refused a request"
        );
        AuthRejection::Replay(e)
    }
}

/// Whose shares of the nonce cache a session's requests spend.
fn nonce_owner(session: &Session) -> NonceOwner<'_> {
    NonceOwner {
        session_id: session.session_id(),
        subject: Some(session.subject()),
    }
}

/// The TCP peer for logs (`-` when the request did not come through the
/// gateway's listener, e.g. the layer used inside another app).
fn client_addr(req: &Request) -> ClientAddr {
    ClientAddr(req.extensions().get::<ConnectionInfo>().map(|c| c.peer))
}

/// The peer address, formatted only when a log line is actually written
/// (this runs on every request; formatting up front would allocate).
#[derive(Clone, Copy)]
struct ClientAddr(Option<std::net::SocketAddr>);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(peer) => peer.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The `Clawgate-Proof` header: `Ok(None)` when absent; several copies
/// are malformed (which one would count is ambiguous).
pub fn proof_header(headers: &HeaderMap) -> Result<Option<&[u8]>, BindingError> {
    let mut values = headers.get_all(PROOF_HEADER).iter();
    let first = values.next().map(http::HeaderValue::as_bytes);
    if values.next().is_some() {
        return Err(BindingError::ProofMalformed);
    }
    Ok(first)
}

/// The request target a proof's `htu` names: path and query, exactly as
/// received (HTTP/2 `:path`; HTTP/1.1 origin form, or the path and query
/// of an absolute-form target).
pub fn request_target(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// Records one binding check of a bound token.
fn record_binding(
    m: &BindingMetrics,
    result: &Result<Confirmed, BindingError>,
    took: std::time::Duration,
) {
    match result {
        Ok(c) => {
            let kind = match (c.proof_verified, c.certificate_verified) {
                (true, true) => "both",
                (true, false) => "proof",
                (false, true) => "certificate",
                (false, false) => "none",
            };
            m.accepted(kind, took);
        }
        Err(e) => m.rejected(e.code(), took),
    }
}

/// The bearer token of a request: from `Authorization`, or from the
/// WebSocket subprotocol offer when there is no `Authorization` header.
/// `Ok(None)` means no credentials at all (a bare 401 challenge).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthRejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(AuthRejection::MalformedCredentials);
        }
        let text = value
            .to_str()
            .map_err(|_| AuthRejection::MalformedCredentials)?;
        let (scheme, token) = text
            .split_once(' ')
            .ok_or(AuthRejection::MalformedCredentials)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthRejection::MalformedCredentials);
        }
        return Ok(Some(token.trim()));
    }
    Ok(websocket_token(headers))
}

fn websocket_token(headers: &HeaderMap) -> Option<&str> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    offered
        .by_ref()
        .find(|p| p.eq_ignore_ascii_case(WS_BEARER_PROTOCOL))?;
    offered.next().filter(|t| !t.is_empty())
}

/// The verified session of a request that passed [`BearerAuth`].
#[derive(Clone)]
pub struct CurrentSession(pub Arc<Session>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentSession {
    type Rejection = ErrorResponse;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Session>>()
            .cloned()
            .map(Self)
            .ok_or_else(|| ErrorResponse::from(&AuthRejection::MissingToken))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests;
