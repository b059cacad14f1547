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

impl SessionBound {
    /// Polls the session's end; once it has come, drops the upstream body
    /// (which closes that connection too) and says so.
    fn session_ended(&mut self, cx: &mut Context<'_>) -> bool {
        let ended = self
            .end
            .as_mut()
            .is_some_and(|end| end.as_mut().poll(cx).is_ready());
        if ended {
            self.inner = None;
            self.end = None;
        }
        ended
    }
}

impl http_body::Body for SessionBound {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.unchecked >= CHECK_EVERY {
            // A body that never waits still gets a look now and then.
            this.unchecked = 0;
            if this.session_ended(cx) {
                return Poll::Ready(Some(Err(Box::new(ProxyError::SessionEnded))));
            }
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            // The upstream makes the body wait: the end is polled (armed),
            // so it wakes this body if the session ends first.
            Poll::Pending => {
                this.unchecked = 0;
                if this.session_ended(cx) {
                    return Poll::Ready(Some(Err(Box::new(ProxyError::SessionEnded))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(frame)) => {
                this.unchecked = this.unchecked.saturating_add(1);
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Ready(None) => {
                // Complete: the session's end no longer matters to this response.
                this.end = None;
                Poll::Ready(None)
            }
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
