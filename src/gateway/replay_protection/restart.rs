//! The timestamp floor that keeps a restart from reopening the replay
//! window.
//!
//! The nonce cache is in memory: a new process has forgotten every nonce
//! the previous one saw. Instead of persisting nonces (a write per
//! protected request), the new process refuses every timestamp the previous
//! one could have accepted as current: those up to and including the second
//! it starts in. To avoid refusing its own first requests, it starts
//! serving only once that second is over, which costs at most one second
//! of start-up. A marker file in the state directory tells whether a
//! process ran there before; on a first start there is nothing to replay,
//! so there is no wait and the floor is the start second itself.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::clock::Clock;

/// Where [`ReplayGuard::refuse_before`](super::ReplayGuard::refuse_before)
/// goes, and how long to wait before serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartFloor {
    /// The lowest acceptable timestamp (Unix seconds).
    pub floor_unix: u64,
    /// How long to wait before accepting connections, so that no honest
    /// request is stamped below the floor.
    pub wait: Duration,
}

/// The floor for a process starting now with state in `state_dir`; marks
/// the directory so that the next start knows a process ran here.
///
/// When a previous process may have run (the marker exists, or cannot be
/// checked), the floor is the second after the current one: the previous
/// process may have accepted a request stamped with this very second just
/// before it died (kill -9, then an immediate restart). A marker that cannot
/// be written is logged and treated the same way: with the marker not
/// working, a previous run cannot be ruled out.
pub fn restart_floor(state_dir: &Path, clock: &dyn Clock) -> RestartFloor {
    let now = clock.now();
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since_epoch.as_secs();
    let marker = state_dir.join(MARKER_FILE);
    let ran_before = match std::fs::symlink_metadata(&marker) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Unknown: assume the worst, the cost is under a second.
        Err(_) => true,
    };
    let marked = std::fs::create_dir_all(state_dir)
        .and_then(|()| std::fs::write(&marker, format!("{second}\n")));
    if let Err(error) = &marked {
        tracing::warn!(
            event = "replay_marker_unwritable",
            %error,
            "cannot mark the state directory; every start waits for the next second"
        );
    }
    // Without a working marker a previous run cannot be ruled out.
    if ran_before || marked.is_err() {
        RestartFloor {
            floor_unix: second.saturating_add(1),
            wait: Duration::from_secs(1)
                .saturating_sub(Duration::from_nanos(u64::from(since_epoch.subsec_nanos()))),
        }
    } else {
        RestartFloor {
            floor_unix: second,
            wait: Duration::ZERO,
        }
    }
}

/// The marker in `[state] dir`: the start second of the last process, in
/// decimal (for operators; only its existence is read).
pub const MARKER_FILE: &str = "replay-floor";
