//! The access log: one event per request (target `clawgate::access`,
//! `event = "access"`), written when the response body has been sent (or
//! dropped), so `bytes` and `duration_ms` are the whole response.
//!
//! A request whose client goes away before the response head is ready
//! (the connection closed while the upstream was still thinking) is
//! logged too, with status 499 and `error = "client_closed"`, nginx's
//! convention, so no request goes unrecorded.
//!
//! Fields: `method`, `path` (never the query string), `status`,
//! `duration_ms`, `bytes` (response body bytes sent), `client`
//! (`ip:port`), and when known `sub`, `sid_prefix` (first 8 characters of
//! the session id; never the token), `error` (the gateway's error code)
//! and `upstream_ms` (time to the upstream's response head).
//!
//! Cost: with `[log] access_log = false` (or the INFO level filtered out)
//! the edge does nothing of this; when on, each request carries one
//! [`AccessSlot`] (one allocation) that the bearer layer and the proxy
//! fill in, and the response body is wrapped once. Nothing is formatted
//! until the event is written.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::gateway::session_manager::{ClientAddr, Session, sid_prefix};

/// Whether this request is logged: the config switch, and the event's
/// level enabled by the subscriber's filter.
pub(crate) fn enabled(configured: bool) -> bool {
    configured && tracing::enabled!(target: "clawgate::access", tracing::Level::INFO)
}

/// What layers below the edge learn about a request (its session, the
/// upstream's time), put in the request's extensions by the edge.
#[derive(Clone, Default)]
pub(crate) struct AccessSlot(Arc<Notes>);

#[derive(Default)]
struct Notes {
    session: OnceLock<Arc<Session>>,
    upstream: OnceLock<Duration>,
}

impl AccessSlot {
    /// Records the authenticated session (the first one wins).
    pub(crate) fn set_session(&self, session: &Arc<Session>) {
        let _ = self.0.session.set(Arc::clone(session));
    }

    /// Records the time to the upstream's response head.
    pub(crate) fn set_upstream(&self, took: Duration) {
        let _ = self.0.upstream.set(took);
    }
}

/// The error code of a gateway-made error answer, set by
/// `ErrorResponse::into_response` (only on errors, so only they pay for
/// the extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// The request half of an access event, taken when the request arrives.
pub(crate) struct Pending {
    started: Instant,
    method: Method,
    uri: Uri,
    client: Option<ClientAddr>,
    slot: AccessSlot,
    /// Until [`finish`](Self::finish) takes over: dropped while armed means
    /// the request was abandoned (client gone before the answer).
    armed: bool,
}

/// The status logged for a request whose client left before the answer.
const CLIENT_CLOSED: u16 = 499;

impl Drop for Pending {
    fn drop(&mut self) {
        if self.armed {
            self.write(CLIENT_CLOSED, Some("client_closed"), 0);
        }
    }
}

impl Pending {
    /// Starts the record and puts the slot in the request's extensions.
    pub(crate) fn start(req: &mut axum::extract::Request) -> Self {
        let slot = AccessSlot::default();
        req.extensions_mut().insert(slot.clone());
        let client = req
            .extensions()
            .get::<crate::gateway::server::ConnectionInfo>()
            .map(|c| ClientAddr::from(c.peer));
        Self {
            started: Instant::now(),
            // Clones of standard methods and of a `Uri` (shared bytes) do not copy text.
            method: req.method().clone(),
            uri: req.uri().clone(),
            client,
            slot,
            armed: true,
        }
    }

    /// Wraps `body` so the event is written when it ends.
    pub(crate) fn finish(
        mut self,
        status: StatusCode,
        error: Option<&'static str>,
        body: Body,
    ) -> Body {
        self.armed = false;
        Body::new(LoggedBody {
            inner: body,
            record: Some(Record {
                pending: self,
                status,
                error,
                bytes: 0,
            }),
        })
    }
}

struct Record {
    pending: Pending,
    status: StatusCode,
    error: Option<&'static str>,
    bytes: u64,
}

impl Record {
    fn write(&self) {
        self.pending
            .write(self.status.as_u16(), self.error, self.bytes);
    }
}

impl Pending {
    fn write(&self, status: u16, error: Option<&'static str>, bytes: u64) {
        let p = self;
        let session = p.slot.0.session.get();
        let duration_ms = p.started.elapsed().as_secs_f64() * 1000.0;
        let upstream_ms = p.slot.0.upstream.get().map(|d| d.as_secs_f64() * 1000.0);
        tracing::info!(
            target: "clawgate::access",
            event = "access",
            method = p.method.as_str(),
            path = p.uri.path(),
            status,
            duration_ms,
            bytes,
            client = p.client.as_ref().map(tracing::field::display),
            sub = session.map(|s| s.subject()),
            sid_prefix = session.map(|s| sid_prefix(s.session_id())),
            error,
            upstream_ms,
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts what it yields and writes the access
    /// event when it ends or is dropped (client gone), exactly once.
    struct LoggedBody {
        #[pin]
        inner: Body,
        record: Option<Record>,
    }

    impl PinnedDrop for LoggedBody {
        fn drop(this: Pin<&mut Self>) {
            if let Some(record) = this.project().record.take() {
                record.write();
            }
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    record.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.take() {
                    record.write();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
