//! Log capture for tests: a shared buffer and subscribers (JSON or plain
//! text, every level) writing into it, made the default for one closure or
//! thread (`with_default` / `set_default`, never the global default: a test
//! binary holds many tests). The unit tests use it as `crate::test_logs`, the
//! integration tests as `common::logs` (`#[path]` in `tests/common/mod.rs`).

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// Captured log output; clones share one buffer.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// A JSON subscriber writing every event (TRACE and up) here.
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        keep_interest_per_thread();
        let logs = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || logs.clone())
            .finish()
    }

    /// A plain-text subscriber (no colours) writing every event here.
    #[allow(dead_code)] // only the integration tests read plain text
    pub(crate) fn text_subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        keep_interest_per_thread();
        let logs = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish()
    }

    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Every event, parsed.
    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
