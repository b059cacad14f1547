//! The in-memory caches of the auth path: replay check (fresh and replayed
//! nonce), revocation lookup (hit and miss among 100,000 revocations), and,
//! printed rather than timed, their memory per entry and how fast expired
//! entries are cleaned up.
//!
//! NFRs: "Token store memory < 100 MB for 100k tokens" and "Session cleanup
//! rate 1,000 expired sessions/second".
//!
//! Run: `cargo bench --bench caches`. Revocations leave moka at least 301 s
//! after they expire (`WALL_CLOCK_SLACK`), so timing that eviction means
//! waiting: `CLAWGATE_BENCH_WAIT_EVICTION=1 cargo bench --bench caches`.
#![allow(clippy::unwrap_used, missing_docs)] // bench setup: a panic is a failed run

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::clock::ManualClock;
use clawgate::config::ReplayConfig;
use clawgate::gateway::replay_protection::{ReplayError, ReplayGuard};
use clawgate::gateway::session_manager::revocation_store::{Revocation, RevocationStore};
use clawgate::gateway::session_token::keyring::KeyRing;
use clawgate::gateway::session_token::{self, Claims, TokenDraft, TokenPolicy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ENTRIES: u64 = 100_000;
/// Default `[replay] window` (300 s) + `[tokens] leeway` (30 s).
const ACCEPTANCE: u64 = 330;

fn replay(c: &mut Criterion) {
    let now = unix_now();
    let ts = now.to_string();
    let mut group = c.benchmark_group("replay_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("fresh_nonce", |b| {
        // A fresh guard per sample bounds memory (each check leaves an
        // entry); encoding the nonce (~50 ns) is inside the timing.
        b.iter_custom(|iters| {
            let guard = replay_guard();
            let start = Instant::now();
            for i in 0..iters {
                let nonce = nonce(i);
                guard.check_at("sid", Some(&nonce), Some(&ts), now).unwrap();
            }
            start.elapsed()
        })
    });
    let guard = replay_guard();
    let seen = nonce(u64::MAX);
    guard.check_at("sid", Some(&seen), Some(&ts), now).unwrap();
    group.bench_function("replayed_nonce", |b| {
        b.iter(|| {
            let outcome = guard.check_at("sid", Some(black_box(&seen)), Some(&ts), now);
            assert_eq!(outcome, Err(ReplayError::Replayed));
        })
    });
    group.finish();
}

fn revocation_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let store = open_with_journal(dir.path(), ENTRIES, now, now + 86_400);
    let (revoked, fresh) = (jti(ENTRIES / 2), jti(ENTRIES + 1));
    let mut group = c.benchmark_group("revocation_lookup_100k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hit", |b| {
        b.iter(|| assert!(store.is_revoked_at(black_box(&revoked), "sid", "alice", now, now)))
    });
    group.bench_function("miss", |b| {
        b.iter(|| assert!(!store.is_revoked_at(black_box(&fresh), "sid", "alice", now, now)))
    });
    group.finish();
}

/// Resident-set growth per kind of entry, printed (not a criterion timing).
fn memory(_: &mut Criterion) {
    let now = unix_now();
    let shm = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir());
    let dir = shm.unwrap();
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(now)));
    let (store, _) = RevocationStore::open(dir.path(), clock);
    let keys = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_init(keys.path()).unwrap();
    let guard = replay_guard();
    let mut claims: Vec<Claims> = Vec::with_capacity(ENTRIES as usize);
    let base = rss_bytes();

    // The runtime path: revoke_at appends + fsyncs each one (tmpfs here).
    let revocations = measure("revocations (jti, via revoke_at)", || {
        for i in 0..ENTRIES {
            store
                .revoke_at(Revocation::token(jti(i), now + 86_400), now)
                .unwrap();
        }
        store.run_pending_tasks();
    });
    let ts = now.to_string();
    let nonces = measure("replay nonces (one session each)", || {
        for i in 0..ENTRIES {
            let sid = jti(i);
            guard
                .check_at(&sid, Some(&nonce(i)), Some(&ts), now)
                .unwrap();
        }
        guard.run_pending_tasks();
    });
    let policy = TokenPolicy::new("clawgate", "clawgate", Duration::from_secs(30));
    let sessions = measure("minted session claims (held in a Vec)", || {
        let at = UNIX_EPOCH + Duration::from_secs(now);
        for _ in 0..ENTRIES {
            let draft = TokenDraft::session("alice@example.com", Duration::from_secs(86_400));
            let minted = session_token::mint_at(&ring, &policy, draft, at).unwrap();
            claims.push(minted.claims().clone());
        }
    });
    let total = rss_bytes().saturating_sub(base);
    println!(
        "memory: all three, 100k each: {:.1} MiB ({:.1} + {:.1} + {:.1} MiB measured separately)",
        mib(total),
        mib(revocations),
        mib(nonces),
        mib(sessions)
    );
    black_box((&store, &guard, &claims));
}

/// How fast expired entries leave the caches, printed.
fn cleanup(_: &mut Criterion) {
    let now = unix_now();
    // Nonces stamped at the oldest acceptable second live exactly 1 s.
    let guard = replay_guard();
    let ts = (now - ACCEPTANCE).to_string();
    for i in 0..ENTRIES {
        guard
            .check_at("sid", Some(&nonce(i)), Some(&ts), now)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1_100));
    let (elapsed, calls) = drain(|| guard.run_pending_tasks(), || guard.live_nonces());
    report_rate("replay nonces evicted by run_pending_tasks", elapsed, calls);

    // Start-up compaction: a journal of expired revocations is dropped on open.
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let store = open_with_journal(dir.path(), ENTRIES, now, now - 1);
    report_rate("expired revocations dropped by open", start.elapsed(), 1);
    assert!(store.is_empty());

    if std::env::var_os("CLAWGATE_BENCH_WAIT_EVICTION").is_some() {
        revocation_eviction(now);
    } else {
        println!(
            "cleanup: revocation eviction skipped (set CLAWGATE_BENCH_WAIT_EVICTION=1; waits 302 s)"
        );
    }
}

/// Revocations whose `until` is now stay in moka `1 s + WALL_CLOCK_SLACK`
/// (301 s) longer; wait that out, then time the eviction.
fn revocation_eviction(now: u64) {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(now)));
    let (store, _) = RevocationStore::open(dir.path(), clock);
    for i in 0..ENTRIES {
        store
            .revoke_at(Revocation::token(jti(i), now), now)
            .unwrap();
    }
    store.run_pending_tasks();
    assert_eq!(store.len(), ENTRIES);
    std::thread::sleep(Duration::from_secs(302));
    let (elapsed, calls) = drain(|| store.run_pending_tasks(), || store.len());
    report_rate(
        "expired revocations evicted by run_pending_tasks",
        elapsed,
        calls,
    );
}

/// Calls `tick` until `remaining` is 0 (at most 100,000 calls); returns the
/// time taken and the number of calls.
fn drain(tick: impl Fn(), remaining: impl Fn() -> u64) -> (Duration, u32) {
    let start = Instant::now();
    let mut calls = 0;
    while remaining() > 0 && calls < 100_000 {
        tick();
        calls += 1;
    }
    assert_eq!(remaining(), 0, "entries left after {calls} calls");
    (start.elapsed(), calls)
}

fn report_rate(what: &str, elapsed: Duration, calls: u32) {
    let rate = ENTRIES as f64 / elapsed.as_secs_f64();
    println!("cleanup: {ENTRIES} {what}: {elapsed:.2?} in {calls} call(s) = {rate:.0} entries/s");
}

fn measure(what: &str, fill: impl FnOnce()) -> u64 {
    let before = rss_bytes();
    fill();
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "memory: {ENTRIES} {what}: +{:.1} MiB RSS = {} bytes/entry",
        mib(grown),
        grown / ENTRIES
    );
    grown
}

/// Resident set from /proc/self/statm (second field, in pages of 4 KiB,
/// the x86_64 Linux page size).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4_096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Opens a store whose journal holds `n` token revocations valid `until`
/// (a gateway's start-up; writing them one `revoke` at a time would cost an
/// fsync each).
fn open_with_journal(dir: &Path, n: u64, now: u64, until: u64) -> RevocationStore {
    let mut journal = String::new();
    for i in 0..n {
        let mut line = serde_json::to_value(Revocation::token(jti(i), until)).unwrap();
        line["at"] = (now - 60).into();
        journal.push_str(&line.to_string());
        journal.push('\n');
    }
    // The journal's file name (revocation_store module docs).
    std::fs::write(dir.join("revocations.jsonl"), journal).unwrap();
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(now)));
    RevocationStore::open(dir, clock).0
}

fn replay_guard() -> ReplayGuard {
    let config = ReplayConfig {
        max_nonces: u64::MAX,
        // One bench session spends every nonce: no fair share applies.
        max_nonces_per_session: u64::MAX,
        max_nonces_per_subject: u64::MAX,
        ..ReplayConfig::default()
    };
    ReplayGuard::new(&config, Duration::from_secs(ACCEPTANCE - 300))
}

/// A distinct 43-character id (32 bytes, base64url), like a real `jti`.
fn jti(i: u64) -> String {
    URL_SAFE_NO_PAD.encode([i.to_le_bytes(); 4].concat())
}

/// A distinct 22-character nonce (16 bytes, base64url).
fn nonce(i: u64) -> String {
    URL_SAFE_NO_PAD.encode(u128::from(i).to_le_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// Memory first: heap freed by the timed benches would otherwise be reused
// without growing the resident set, and the figures would read too low.
criterion_group!(benches, memory, cleanup, replay, revocation_lookup);
criterion_main!(benches);
