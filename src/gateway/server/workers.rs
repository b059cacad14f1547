//! Thread-per-core serving: `[server] workers` threads, each running its own
//! single-threaded Tokio runtime. The accept loop hands every admitted
//! connection to the next worker in turn, and the connection's task (TLS,
//! HTTP, the request handlers, the upstream connections they open) stays on
//! that thread for its whole life.
//!
//! Why: on a multi-threaded runtime, a keep-alive request wakes tasks on
//! other threads (work stealing, the upstream pool's connection driven by
//! whichever thread polled it last), and each cross-thread wake is a futex
//! and a cache miss. One event loop per core keeps a request's work on one
//! core, as nginx's worker processes do (issue 12: the same hyper + rustls
//! stack went from 0.89× to 1.13× nginx's requests/s this way).
//!
//! Shared state (sessions, revocations, metrics, admission) stays shared:
//! only where a task runs changes. Each worker has its own upstream pool
//! (`Proxy` picks it by [`current`]), so a pooled upstream connection is
//! driven by the thread that uses it.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

thread_local! {
    /// 1-based index of the worker running on this thread; 0 elsewhere.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Index of the worker on this thread (1..=N), or 0 off the workers (the
/// main runtime, tests): the slot of per-worker state to use.
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// The worker threads. Dropping this stops them: each thread's runtime is
/// dropped there, which cancels the tasks still on it.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropped (never sent) to stop the workers.
    _stops: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` worker threads (at least one).
    pub(crate) fn start(count: usize) -> io::Result<Self> {
        let count = count.max(1);
        // The workers log where the thread starting them logs: the global
        // subscriber in the binary, a test's own capture in the tests.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let mut handles = Vec::with_capacity(count);
        let mut stops = Vec::with_capacity(count);
        for index in 1..=count {
            let for_blocking = dispatch.clone();
            let runtime = Builder::new_current_thread()
                .enable_all()
                .on_thread_start(move || {
                    // The runtime's blocking threads (argon2, file I/O)
                    // live and die with it: the default stays for good.
                    std::mem::forget(tracing::dispatcher::set_default(&for_blocking));
                })
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            let dispatch = dispatch.clone();
            handles.push(runtime.handle().clone());
            stops.push(stop);
            std::thread::Builder::new()
                // Short enough for the kernel's 15-byte thread name
                // (`top -H`, `/proc/PID/task/*/comm`) to keep the index.
                .name(format!("clawgate-w{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    let _logs = tracing::dispatcher::set_default(&dispatch);
                    // A current-thread runtime runs its tasks only inside
                    // `block_on`: this thread drives them until the stop.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            _stops: stops,
        })
    }

    /// The runtime of the next worker, round robin.
    pub(crate) fn next(&self) -> &Handle {
        // In bounds: `start` makes at least one worker.
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_workers_in_turn_and_stop_with_them() {
        let workers = Workers::start(2).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let on = workers.next().spawn(async { current() }).await.unwrap();
            seen.push(on);
        }
        assert_eq!(seen, [1, 2, 1, 2]);
        assert_eq!(current(), 0, "the test's own thread is no worker");
        let handle = workers.next().clone();
        let pending = handle.spawn(std::future::pending::<()>());
        drop(workers);
        let error = pending.await.unwrap_err();
        assert!(error.is_cancelled(), "{error}");
    }
}
