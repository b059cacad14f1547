//! Memory held by the gateway for 100,000 live sessions (the per-user
//! session index and refresh state kept by `SessionManager`) plus 100,000
//! revocations in the in-memory set.
//!
//! Run: `cargo run --release --example session_memory`

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use clawgate::clock::SystemClock;
use clawgate::config::{AuthConfig, StateConfig, TokensConfig};
use clawgate::gateway::session_manager::revocation_store::{Revocation, RevocationStore};
use clawgate::gateway::session_manager::{IssueMethod, SessionManager};

const N: usize = 100_000;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(SystemClock);
    let tokens = TokensConfig {
        keys_dir: dir.path().join("keys"),
        ..TokensConfig::default()
    };
    let auth = AuthConfig {
        pairing: false,
        ..AuthConfig::default()
    };
    let state = StateConfig {
        dir: dir.path().join("state"),
    };
    let sessions = SessionManager::open(&tokens, &auth, &state, clock)?;

    let before = rss_kib()?;
    // 20,000 users × 5 sessions: the per-user limit never evicts.
    let mut kept = 0usize;
    for i in 0..N {
        let pair = sessions.issue(&format!("user-{}", i / 5), vec![], None, IssueMethod::Login)?;
        kept += pair.session_token().len(); // tokens go to clients; nothing else is kept here
    }
    let after_sessions = rss_kib()?;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    // In-memory revocations only (the journal write is measured elsewhere):
    // a state dir that is a file makes every append fail fast, memory-first.
    std::fs::write(dir.path().join("blocker"), b"")?;
    let (mem_only, _) = RevocationStore::open(
        &dir.path().join("blocker").join("state"),
        Arc::new(SystemClock),
    );
    for i in 0..N {
        let _ = mem_only.revoke(Revocation::token(jti(i), until));
    }
    mem_only.run_pending_tasks();
    let after_revocations = rss_kib()?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{N} live sessions: {:.1} MiB ({:.0} bytes each)",
        mib(after_sessions - before),
        (after_sessions - before) as f64 * 1024.0 / N as f64
    );
    println!(
        "{N} revocations: {:.1} MiB ({:.0} bytes each)",
        mib(after_revocations - after_sessions),
        (after_revocations - after_sessions) as f64 * 1024.0 / N as f64
    );
    println!(
        "total: {:.1} MiB (token bytes handed out: {kept})",
        mib(after_revocations - before)
    );
    Ok(())
}

/// A distinct `jti` shaped like the minted ones: 32 bytes (here SHA-256
/// of the index, so spread like random ids) in base64url, 43 characters.
fn jti(i: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &i.to_le_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("VmRSS not found"))
}
