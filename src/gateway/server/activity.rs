//! What a connection is doing, for its deadlines: whether it has sent a
//! complete request head yet, how many requests are in progress, and since
//! when none has been. The service counts a request from the moment hyper
//! hands it a complete head until hyper drops the response body (the end of
//! the response, or the client giving up), over HTTP/1.1 and HTTP/2 alike.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::future::RouteFuture;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::ConnectionInfo;

/// Activity of one connection, shared by its requests and its deadline loop.
#[derive(Debug)]
pub(super) struct Activity {
    /// When the TLS handshake ended; times below are milliseconds after it.
    start: Instant,
    served: AtomicBool,
    in_flight: AtomicUsize,
    idle_since_ms: AtomicU64,
    /// HTTP/1.1 stream state, for hibernation: bytes written since the
    /// last completed flush, and whether a shutdown of the stream began.
    unflushed: AtomicBool,
    shutting_down: AtomicBool,
}

/// The connection's deadlines (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// From the end of the handshake to the first complete request head.
    pub(super) first_request: Duration,
    /// With no request in progress.
    pub(super) idle: Duration,
}

/// What the deadline loop does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Check again at this instant.
    WaitUntil(Instant),
    /// The named deadline passed with no request in progress.
    Close(&'static str),
}

impl Activity {
    /// A connection whose handshake ended now.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            served: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            unflushed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Decides, at `now`, whether a deadline has passed.
    ///
    /// Invariant: the instant returned in `WaitUntil` is never later than
    /// the deadline that applies once the connection is idle: while busy,
    /// or before the first request, it is at most `now + idle`, and a
    /// request ending after `now` moves the idle deadline to at least that;
    /// while idle after a request it is that deadline. So the loop needs no
    /// wake-up when a request ends: at worst its timer fires early and this
    /// is asked again.
    pub(super) fn step(&self, deadlines: Deadlines, now: Instant) -> Step {
        // Invariant: a connection with a request in progress is never cut by
        // these deadlines (the body and upstream timeouts govern it); check
        // again one idle period later.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Step::WaitUntil(now + deadlines.idle);
        }
        let (since, limit, name) = if self.served.load(Ordering::Acquire) {
            let idle_ms = self.idle_since_ms.load(Ordering::Acquire);
            (Duration::from_millis(idle_ms), deadlines.idle, "idle")
        } else {
            (Duration::ZERO, deadlines.first_request, "first_request")
        };
        let deadline = self.start + since + limit;
        if now >= deadline {
            Step::Close(name)
        } else if self.served.load(Ordering::Acquire) {
            Step::WaitUntil(deadline)
        } else {
            // A first request may come and go before the first-request
            // deadline; its idle deadline is then at least `now + idle`.
            Step::WaitUntil(deadline.min(now + deadlines.idle))
        }
    }

    /// Whether any request is in progress.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Since when no request has been in progress (the end of the last
    /// response, or the handshake); `None` while one is.
    pub(super) fn quiet_since(&self) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let idle_ms = self.idle_since_ms.load(Ordering::Acquire);
        Some(self.start + Duration::from_millis(idle_ms))
    }

    /// The stream took bytes that a flush has not yet pushed out.
    pub(super) fn wrote(&self) {
        self.unflushed.store(true, Ordering::Relaxed);
    }

    /// A flush completed: nothing written is left in a buffer.
    pub(super) fn flushed(&self) {
        self.unflushed.store(false, Ordering::Relaxed);
    }

    /// The HTTP layer began to shut the stream down (it is closing).
    pub(super) fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Whether everything written was flushed and no shutdown began.
    pub(super) fn stream_settled(&self) -> bool {
        !self.unflushed.load(Ordering::Relaxed) && !self.shutting_down.load(Ordering::Relaxed)
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        RequestGuard(Arc::clone(self))
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Counts one request as in progress until dropped.
#[derive(Debug)]
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // The idle clock is moved before the count drops, so the deadline
        // loop never sees "nothing in progress" with a stale idle start.
        // Nobody is woken: the deadline loop's timer is never later than
        // the idle deadline this moves (see `step`), so it re-reads the
        // clock when it fires (issue 12: no wake-up per request).
        let now = self.0.millis_since_start();
        self.0.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The hyper service of one connection: adds the connection facts to each
/// request and counts it in the connection's [`Activity`].
#[derive(Clone)]
pub(super) struct ConnectionService {
    pub(super) app: Router,
    pub(super) info: ConnectionInfo,
    pub(super) activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedResponse;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        let guard = self.activity.begin();
        req.extensions_mut().insert(self.info.clone());
        let mut app = self.app.clone();
        TrackedResponse {
            inner: tower::Service::call(&mut app, req),
            guard: Some(guard),
        }
    }
}

/// The router's response future, holding the request's guard (dropped with
/// it if the client gives up first) until it moves into the body.
pub(super) struct TrackedResponse {
    inner: RouteFuture<Infallible>,
    guard: Option<RequestGuard>,
}

impl Future for TrackedResponse {
    type Output = Result<hyper::Response<TrackedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => return Poll::Pending,
        };
        let guard = self.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

/// A response body that keeps its request counted until hyper drops it.
pub(super) struct TrackedBody {
    inner: Body,
    _guard: Option<RequestGuard>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn silent_connection_closes_at_the_first_request_deadline() {
        let activity = Activity::new();
        let start = activity.start;
        assert_eq!(
            activity.step(DEADLINES, start),
            Step::WaitUntil(start + Duration::from_secs(10))
        );
        assert_eq!(
            activity.step(DEADLINES, start + Duration::from_secs(10)),
            Step::Close("first_request")
        );
    }

    #[test]
    fn busy_connection_never_closes_and_idle_counts_from_the_last_response() {
        let activity = Activity::new();
        let guard = activity.begin();
        let late = activity.start + Duration::from_secs(3600);
        assert_eq!(
            activity.step(DEADLINES, late),
            Step::WaitUntil(late + DEADLINES.idle)
        );
        drop(guard);
        assert!(!activity.busy());
        let now = Instant::now();
        let Step::WaitUntil(at) = activity.step(DEADLINES, now) else {
            panic!("closed right after a response");
        };
        // The idle clock started when the response ended, not at the handshake.
        assert!(at + Duration::from_secs(1) >= now + DEADLINES.idle);
        assert_eq!(
            activity.step(DEADLINES, now + DEADLINES.idle),
            Step::Close("idle")
        );
    }
}
