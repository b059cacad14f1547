//! `[server] workers`: the configured number of worker threads serve the
//! connections, and they stop with the gateway.

use std::time::Duration;

use crate::common::{self, TestGateway};

/// Names of this process's threads (Linux: `/proc/self/task/*/comm`).
fn thread_names() -> Option<Vec<String>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect(),
    )
}

#[tokio::test]
async fn the_configured_workers_serve_and_stop_with_the_gateway() {
    if thread_names().is_none() {
        eprintln!("SKIPPED: no /proc/self/task on this system");
        return;
    }
    // Seven: no other test in this binary runs a seventh worker.
    let gw = TestGateway::start(|c, _| c.server.workers = 7).await;
    let count = |name: &str| {
        thread_names()
            .unwrap_or_default()
            .iter()
            .filter(|n| *n == name)
            .count()
    };
    assert_eq!(count("clawgate-w7"), 1, "{:?}", thread_names());
    // Seven connections, one per worker in turn: every one is served.
    for _ in 0..7 {
        assert_eq!(gw.client().get(gw.addr(), "/health").await.status, 200);
    }
    gw.running.shutdown().await;
    assert!(
        common::eventually(Duration::from_secs(5), || count("clawgate-w7") == 0).await,
        "a worker thread outlived its gateway: {:?}",
        thread_names()
    );
}
