//! Log capture for integration tests: a shared buffer, and subscribers
//! (JSON or plain text, every level) that write into it.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// Captured log output; clones share one buffer.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A JSON subscriber writing every event (TRACE and up) here.
    pub fn json_subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        keep_interest_per_thread();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
            .finish()
    }

    /// A plain-text subscriber (no colours) writing every event here.
    pub fn text_subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        keep_interest_per_thread();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// With a single dispatcher registered, tracing-core caches a callsite's
/// interest from the default subscriber of whichever thread hits it first:
/// a parallel test without a subscriber would switch the event off for a
/// capturing one. A second, permanent dispatcher makes every registration
/// ask all live subscribers instead.
fn keep_interest_per_thread() {
    static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}
