//! Library-level tests of `ReplayGuard`: each rejection, session scoping,
//! window expiry, fail-closed capacity and concurrent duplicates.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::config::ReplayConfig;
use clawgate::gateway::replay_protection::{ReplayError, ReplayGuard};

const NOW: u64 = 1_700_000_000;
const WINDOW: u64 = 300;
const LEEWAY: u64 = 30;

fn guard_with(max_nonces: u64) -> ReplayGuard {
    let config = ReplayConfig {
        window: Duration::from_secs(WINDOW),
        max_nonces,
        ..ReplayConfig::default()
    };
    ReplayGuard::new(&config, Duration::from_secs(LEEWAY))
}

fn guard() -> ReplayGuard {
    guard_with(1_000)
}

fn nonce(n: u32) -> String {
    let mut bytes = [0x5au8; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ts(t: u64) -> String {
    t.to_string()
}

#[test]
fn fresh_nonce_and_current_timestamp_pass() {
    let g = guard();
    assert_eq!(
        g.check_at("sid-1", Some(&nonce(1)), Some(&ts(NOW)), NOW),
        Ok(())
    );
}

#[test]
fn missing_headers_each_get_their_error() {
    let g = guard();
    assert_eq!(
        g.check_at("s", None, Some(&ts(NOW)), NOW),
        Err(ReplayError::MissingNonce)
    );
    assert_eq!(
        g.check_at("s", Some(""), Some(&ts(NOW)), NOW),
        Err(ReplayError::MissingNonce)
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(1)), None, NOW),
        Err(ReplayError::MissingTimestamp)
    );
}

#[test]
fn malformed_nonce_is_rejected() {
    let g = guard();
    let short = URL_SAFE_NO_PAD.encode([1u8; 15]); // 120 bits: too few
    let long = URL_SAFE_NO_PAD.encode([1u8; 65]);
    let padded = format!("{}==", nonce(1));
    for bad in [
        short.as_str(),
        &long,
        &padded,
        "not base64 at all!!!!!!",
        "a+b/",
    ] {
        assert_eq!(
            g.check_at("s", Some(bad), Some(&ts(NOW)), NOW),
            Err(ReplayError::MalformedNonce),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_timestamp_is_rejected() {
    let g = guard();
    for bad in [
        "+1700000000",
        "-5",
        " 1700000000",
        "1700000000.0",
        "17e8",
        "0x10",
        "1234567890123",
    ] {
        assert_eq!(
            g.check_at("s", Some(&nonce(1)), Some(bad), NOW),
            Err(ReplayError::MalformedTimestamp),
            "{bad:?}"
        );
    }
}

#[test]
fn timestamp_outside_window_plus_leeway_is_stale_or_future() {
    let g = guard();
    let edge = WINDOW + LEEWAY;
    assert_eq!(
        g.check_at("s", Some(&nonce(1)), Some(&ts(NOW - edge)), NOW),
        Ok(()),
        "the edge itself is inside"
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(2)), Some(&ts(NOW - edge - 1)), NOW),
        Err(ReplayError::Stale)
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(3)), Some(&ts(NOW + edge)), NOW),
        Ok(())
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(4)), Some(&ts(NOW + edge + 1)), NOW),
        Err(ReplayError::Future)
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(5)), Some(&ts(0)), NOW),
        Err(ReplayError::Stale)
    );
}

#[test]
fn same_nonce_twice_in_one_session_is_a_replay() {
    let g = guard();
    let n = nonce(7);
    g.check_at("s", Some(&n), Some(&ts(NOW)), NOW).unwrap();
    assert_eq!(
        g.check_at("s", Some(&n), Some(&ts(NOW)), NOW + 1),
        Err(ReplayError::Replayed)
    );
    // A different timestamp does not make the same nonce new.
    assert_eq!(
        g.check_at("s", Some(&n), Some(&ts(NOW + 5)), NOW + 5),
        Err(ReplayError::Replayed)
    );
}

#[test]
fn same_nonce_under_two_sessions_both_pass() {
    let g = guard();
    let n = nonce(8);
    assert_eq!(
        g.check_at("session-a", Some(&n), Some(&ts(NOW)), NOW),
        Ok(())
    );
    assert_eq!(
        g.check_at("session-b", Some(&n), Some(&ts(NOW)), NOW),
        Ok(())
    );
}

#[test]
fn after_the_window_the_old_request_is_stale_and_the_nonce_is_forgotten() {
    let g = guard();
    let n = nonce(9);
    g.check_at("s", Some(&n), Some(&ts(NOW)), NOW).unwrap();
    let later = NOW + WINDOW + LEEWAY + 1;
    // The captured request can no longer be replayed: its timestamp is stale.
    assert_eq!(
        g.check_at("s", Some(&n), Some(&ts(NOW)), later),
        Err(ReplayError::Stale)
    );
    // The nonce entry no longer counts: with a current timestamp it is new.
    assert_eq!(g.check_at("s", Some(&n), Some(&ts(later)), later), Ok(()));
    g.run_pending_tasks();
    assert_eq!(g.live_nonces(), 1);
}

#[test]
fn full_cache_fails_closed_instead_of_forgetting_nonces() {
    let g = guard_with(3);
    for i in 0..3 {
        g.check_at("s", Some(&nonce(i)), Some(&ts(NOW)), NOW)
            .unwrap();
    }
    assert_eq!(
        g.check_at("s", Some(&nonce(100)), Some(&ts(NOW)), NOW),
        Err(ReplayError::CapacityExhausted)
    );
    // Known nonces are refused too, as the replays they are: nothing is
    // let through while full, and a replay is not reported as a full cache.
    for i in 0..3 {
        assert_eq!(
            g.check_at("s", Some(&nonce(i)), Some(&ts(NOW)), NOW),
            Err(ReplayError::Replayed),
            "nonce {i}"
        );
    }
    // Nothing was evicted to make room.
    assert_eq!(g.live_nonces(), 3);
}

#[test]
fn replays_are_still_detected_when_the_cache_has_room_again() {
    let g = guard_with(2);
    g.check_at("s", Some(&nonce(1)), Some(&ts(NOW)), NOW)
        .unwrap();
    assert_eq!(
        g.check_at("s", Some(&nonce(1)), Some(&ts(NOW)), NOW),
        Err(ReplayError::Replayed)
    );
    // The refused duplicate gave its reserved slot back.
    assert_eq!(g.live_nonces(), 1);
    assert_eq!(
        g.check_at("s", Some(&nonce(2)), Some(&ts(NOW)), NOW),
        Ok(())
    );
}

#[test]
fn concurrent_duplicate_nonce_from_eight_threads_passes_exactly_once() {
    for round in 0..20 {
        let g = Arc::new(guard());
        let barrier = Arc::new(Barrier::new(8));
        let n = nonce(round);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (g, barrier, n) = (Arc::clone(&g), Arc::clone(&barrier), n.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    g.check_at("s", Some(&n), Some(&ts(NOW)), NOW)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let passed = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(ReplayError::Replayed)))
        );
    }
}

#[test]
fn applies_only_to_configured_unsafe_methods_in_any_case() {
    let g = guard();
    // Upstreams fold the case of methods: `post` runs a POST handler.
    for m in ["POST", "PUT", "PATCH", "DELETE", "post", "Patch"] {
        assert!(g.applies_to(m), "{m}");
    }
    for m in ["GET", "HEAD", "OPTIONS", "get"] {
        assert!(!g.applies_to(m), "{m}");
    }
    let off = ReplayGuard::new(
        &ReplayConfig {
            enabled: false,
            ..ReplayConfig::default()
        },
        Duration::ZERO,
    );
    assert!(!off.applies_to("POST"));
}

#[test]
fn error_messages_never_echo_header_values() {
    let g = guard();
    let secretish = "ZZZZ-distinctive-nonce-value-ZZZZ";
    let err = g
        .check_at("s", Some(secretish), Some("also-distinctive"), NOW)
        .unwrap_err();
    let rendered = format!("{err} {err:?}");
    assert!(!rendered.contains("distinctive"), "{rendered}");
}
