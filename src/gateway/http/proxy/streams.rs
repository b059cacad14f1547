//! Long-lived streams: response bodies that stop when the session ends, and
//! the WebSocket splice.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::uri::Authority;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::{ProxyError, SessionEnd};

/// The upstream body for the client; with a session end, it is aborted
/// (an error frame, so the client sees an incomplete message) when the
/// session ends, and the upstream connection is dropped.
pub(super) fn session_bound(body: Incoming, session_end: Option<SessionEnd>) -> Body {
    match session_end {
        Some(end) => Body::new(SessionBound {
            inner: Some(body),
            end: Some(end),
            unchecked: 0,
        }),
        None => Body::new(body),
    }
}

/// Splices the two upgraded connections until either side closes, the
/// session ends or the gateway stops; then both are shut down (TLS
/// close_notify, FIN).
pub(super) async fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    session_end: Option<SessionEnd>,
    mut closing: watch::Receiver<bool>,
    authority: Authority,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(
                error.code = "websocket_upgrade_failed",
                upstream = %authority,
                error.detail = %err,
                "websocket upgrade failed"
            );
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let session_end = async move {
        match session_end {
            Some(end) => end.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            tracing::debug!(upstream = %authority, ok = result.is_ok(), "websocket closed");
            return;
        }
        () = session_end => {
            tracing::debug!(upstream = %authority, "session ended; closing websocket");
        }
        // An error means the proxy itself is gone: close as well.
        _ = closing.wait_for(|closing| *closing) => {
            tracing::debug!(upstream = %authority, "gateway stopping; closing websocket");
        }
    }
    // Bounded so a peer that stopped reading cannot keep the task alive.
    let shutdown = async {
        let _ = client.shutdown().await;
        let _ = upstream.shutdown().await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, shutdown).await;
}

/// A response body that stops when the session ends.
///
/// The end is polled (and so armed: subscribed to revocations, with a
/// timer) when the upstream makes the body wait, and at least every
/// `CHECK_EVERY` frames of a body that never waits: a small body that is
/// already here goes out without the watch, a long stream is watched.
struct SessionBound {
    inner: Option<Incoming>,
    end: Option<SessionEnd>,
    /// Frames passed on since the end was last polled.
    unchecked: u8,
}

/// Most frames a body that is always ready passes on between two looks
/// at the session's end.
const CHECK_EVERY: u8 = 16;

/// The error of a session-bound body.
type BodyError = Box<dyn StdError + Send + Sync>;

impl SessionBound {
    /// Hands on what the upstream body gave, counting frames since the last
    /// look at the session's end.
    fn pass_on(
        &mut self,
        polled: Poll<Option<Result<Frame<Bytes>, hyper::Error>>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match polled {
            Poll::Ready(Some(frame)) => {
                self.unchecked = self.unchecked.saturating_add(1);
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Ready(None) => {
                // Complete: the session's end no longer matters to this response.
                self.end = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl http_body::Body for SessionBound {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let look_due = this.unchecked >= CHECK_EVERY;
        if !look_due {
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => {}
                ready @ Poll::Ready(_) => return this.pass_on(ready),
            }
        }
        // The upstream makes the body wait, or a look is due: the end is
        // polled, so it wakes this body if the session ends.
        this.unchecked = 0;
        if this
            .end
            .as_mut()
            .is_some_and(|end| end.as_mut().poll(cx).is_ready())
        {
            // Dropping the upstream body closes that connection too.
            this.inner = None;
            this.end = None;
            return Poll::Ready(Some(Err(Box::new(ProxyError::SessionEnded))));
        }
        if !look_due {
            // The body is waiting and the end is armed: either wakes us.
            return Poll::Pending;
        }
        // The look found the session alive: the body's turn.
        match this.inner.as_mut() {
            Some(inner) => {
                let polled = Pin::new(inner).poll_frame(cx);
                this.pass_on(polled)
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, http_body::Body::size_hint)
    }
}

/// Time allowed to flush a TLS close_notify/FIN when a session ends a WebSocket.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);
