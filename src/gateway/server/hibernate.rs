//! Hibernation of idle HTTP/1.1 connections (issue 12, idle memory).
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for the whole
//! life of an HTTP/1.1 connection. A connection with no request in progress
//! for [`HIBERNATE_AFTER`] is therefore taken apart between two messages:
//! its TLS stream and the bytes hyper read but did not use are kept, hyper's
//! connection (and its buffers) is dropped, and the task waits for the
//! client's next bytes holding only the TLS stream. Those bytes start a new
//! hyper connection over the same stream, the kept bytes replayed first.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;

use super::TlsStream;
use super::activity::Activity;

/// How long an HTTP/1.1 connection stays with no request in progress
/// before it hibernates. Under keep-alive load the next request follows
/// within a millisecond, so a busy connection never pays a rebuild per
/// request; a browser's idle connection (seconds to minutes) is released
/// almost at once. The check is a timer of the connection task, which
/// wakes at most once per this period.
pub(super) const HIBERNATE_AFTER: Duration = Duration::from_millis(250);

/// The stream hyper serves HTTP/1.1 on: the TLS stream, with bytes already
/// received (before a hibernation) replayed first, and the write-side state
/// the hibernation check needs recorded in the connection's [`Activity`].
pub(super) struct H1Io {
    replay: Bytes,
    tls: TokioIo<TlsStream>,
    activity: Arc<Activity>,
}

impl H1Io {
    pub(super) fn new(tls: TlsStream, replay: Bytes, activity: Arc<Activity>) -> Self {
        Self {
            replay,
            tls: TokioIo::new(tls),
            activity,
        }
    }

    /// The TLS stream and every received byte hyper did not use, in order:
    /// first `unread` (hyper's read buffer, read from this stream earlier),
    /// then what is left of this stream's own replay. Copied out, so the
    /// buffer they came from is freed.
    pub(super) fn into_hibernation(self, unread: &[u8]) -> (TlsStream, Bytes) {
        let saved = if unread.is_empty() && self.replay.is_empty() {
            Bytes::new()
        } else {
            let mut saved = BytesMut::with_capacity(unread.len() + self.replay.len());
            saved.extend_from_slice(unread);
            saved.extend_from_slice(&self.replay);
            saved.freeze()
        };
        (self.tls.into_inner(), saved)
    }
}

impl Read for H1Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Invariant: replayed bytes come before any new byte of the stream,
        // and each exactly once.
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            if this.replay.is_empty() {
                // Release the replay's allocation.
                this.replay = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tls).poll_read(cx, buf)
    }
}

impl Write for H1Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.activity.wrote();
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.activity.wrote();
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.tls).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.activity.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.activity.shutting_down();
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}
