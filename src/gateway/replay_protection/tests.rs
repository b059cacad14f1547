use super::*;

const NOW: u64 = 1_700_000_000;

fn guard(window_secs: u64, leeway_secs: u64, max_nonces: u64) -> ReplayGuard {
    let config = ReplayConfig {
        window: Duration::from_secs(window_secs),
        max_nonces,
        ..ReplayConfig::default()
    };
    ReplayGuard::new(&config, Duration::from_secs(leeway_secs))
}

fn nonce(n: u8) -> String {
    URL_SAFE_NO_PAD.encode([n; 16])
}

fn stored(g: &ReplayGuard, session: &str, n: u8) -> Option<NonceEntry> {
    g.seen.get(&nonce_key(session, &[n; 16]))
}

#[test]
fn entry_lives_exactly_until_its_timestamp_turns_stale() {
    let g = guard(300, 30, 10);
    let ts = NOW.to_string();
    g.check_at("s", Some(&nonce(1)), Some(&ts), NOW).unwrap();
    let entry = stored(&g, "s", 1).expect("nonce remembered");
    // Accepted through NOW + 330 inclusive, stale from NOW + 331.
    assert_eq!(entry.expires_at, NOW + 331);
    assert_eq!(entry.ttl, Duration::from_secs(331));
    assert!(g.check_window(NOW, NOW + 330).is_ok());
    assert_eq!(g.check_window(NOW, NOW + 331), Err(ReplayError::Stale));
}

#[test]
fn ttl_counts_from_the_timestamp_not_from_arrival() {
    let g = guard(300, 0, 10);
    // A request stamped 200 s ago can only be accepted for 100 s more.
    let ts = (NOW - 200).to_string();
    g.check_at("s", Some(&nonce(2)), Some(&ts), NOW).unwrap();
    assert_eq!(stored(&g, "s", 2).unwrap().ttl, Duration::from_secs(101));
    // One stamped 100 s ahead stays acceptable for 400 s.
    let ts = (NOW + 100).to_string();
    g.check_at("s", Some(&nonce(3)), Some(&ts), NOW).unwrap();
    assert_eq!(stored(&g, "s", 3).unwrap().ttl, Duration::from_secs(401));
}

#[test]
fn wall_clock_expired_entry_is_replaced_and_its_slot_released() {
    let g = guard(10, 0, 10);
    g.check_at("s", Some(&nonce(4)), Some(&NOW.to_string()), NOW)
        .unwrap();
    assert_eq!(g.live_nonces(), 1);
    // Much later (by the injected clock; moka's own clock has not moved),
    // the same nonce with a fresh timestamp is a new request.
    let later = NOW + 1_000;
    g.check_at("s", Some(&nonce(4)), Some(&later.to_string()), later)
        .unwrap();
    g.run_pending_tasks();
    assert_eq!(g.live_nonces(), 1, "replacement must not leak a slot");
    assert_eq!(stored(&g, "s", 4).unwrap().expires_at, later + 11);
}

#[test]
fn rejected_requests_take_no_slot() {
    let g = guard(10, 0, 10);
    let ts = NOW.to_string();
    g.check_at("s", Some(&nonce(5)), Some(&ts), NOW).unwrap();
    assert_eq!(
        g.check_at("s", Some(&nonce(5)), Some(&ts), NOW),
        Err(ReplayError::Replayed)
    );
    let stale = (NOW - 11).to_string();
    assert_eq!(
        g.check_at("s", Some(&nonce(6)), Some(&stale), NOW),
        Err(ReplayError::Stale)
    );
    assert_eq!(g.live_nonces(), 1);
}

#[test]
fn timestamp_window_is_inclusive_on_both_sides() {
    let g = guard(300, 30, 10);
    let ts = |t: u64| t.to_string();
    // Exactly window + leeway ahead is accepted; one second more is not.
    g.check_at("s", Some(&nonce(30)), Some(&ts(NOW + 330)), NOW)
        .unwrap();
    assert_eq!(
        g.check_at("s", Some(&nonce(31)), Some(&ts(NOW + 331)), NOW),
        Err(ReplayError::Future)
    );
    g.check_at("s", Some(&nonce(32)), Some(&ts(NOW - 330)), NOW)
        .unwrap();
    assert_eq!(
        g.check_at("s", Some(&nonce(33)), Some(&ts(NOW - 331)), NOW),
        Err(ReplayError::Stale)
    );
    assert_eq!(g.live_nonces(), 2, "refused requests take no slot");
}

#[test]
fn applies_to_configured_methods_in_any_case_and_only_when_enabled() {
    let g = guard(300, 30, 10);
    // Upstreams fold the case (issue 11 item 5): every spelling is protected.
    for method in [
        "POST", "PUT", "PATCH", "DELETE", "post", "Post", "pUt", "delete",
    ] {
        assert!(g.applies_to(method), "{method}");
    }
    for method in ["GET", "HEAD", "OPTIONS", "get", "POST ", "POSTS"] {
        assert!(!g.applies_to(method), "{method:?}");
    }
    let disabled = ReplayConfig {
        enabled: false,
        ..ReplayConfig::default()
    };
    let g = ReplayGuard::new(&disabled, Duration::from_secs(30));
    assert!(!g.applies_to("POST"));
}

#[test]
fn nonce_key_separates_session_and_nonce_boundaries() {
    assert_ne!(nonce_key("ab", b"c"), nonce_key("a", b"bc"));
    assert_ne!(nonce_key("s1", b"n"), nonce_key("s2", b"n"));
    assert_eq!(nonce_key("s", b"n"), nonce_key("s", b"n"));
}

#[test]
fn nonce_length_bounds_are_exact() {
    let ok = |s: &str| parse_nonce(Some(s.as_bytes())).map(|(_, len)| len);
    assert_eq!(ok(&URL_SAFE_NO_PAD.encode([7u8; 16])), Ok(16));
    assert_eq!(ok(&URL_SAFE_NO_PAD.encode([7u8; 64])), Ok(64));
    assert_eq!(
        ok(&URL_SAFE_NO_PAD.encode([7u8; 15])),
        Err(ReplayError::MalformedNonce)
    );
    assert_eq!(
        ok(&URL_SAFE_NO_PAD.encode([7u8; 65])),
        Err(ReplayError::MalformedNonce)
    );
}

#[test]
fn every_accepted_nonce_spelling_decodes_to_16_to_64_bytes() {
    for chars in 1..=100 {
        let raw = "A".repeat(chars);
        match parse_nonce(Some(raw.as_bytes())) {
            Ok((_, len)) => {
                assert!((MIN_NONCE_CHARS..=MAX_NONCE_CHARS).contains(&chars));
                assert!(
                    (MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&len),
                    "{chars}"
                );
            }
            Err(e) => assert_eq!(e, ReplayError::MalformedNonce, "{chars}"),
        }
    }
}

#[test]
fn capacity_refusal_first_reclaims_slots_of_dead_entries() {
    let g = guard(300, 0, 2);
    let ts = NOW.to_string();
    g.check_at("s", Some(&nonce(10)), Some(&ts), NOW).unwrap();
    g.check_at("s", Some(&nonce(11)), Some(&ts), NOW).unwrap();
    // Entries that are gone but still counted until moka's housekeeping
    // runs (in service: expired on moka's clock; here: invalidated, which
    // moka also only reaps in housekeeping).
    g.seen.invalidate_all();
    assert_eq!(g.live_nonces(), 2);
    g.check_at("s", Some(&nonce(12)), Some(&ts), NOW).unwrap();
    assert_eq!(g.live_nonces(), 1);
    // Live entries are never reclaimed: at capacity the guard refuses.
    g.check_at("s", Some(&nonce(13)), Some(&ts), NOW).unwrap();
    assert_eq!(
        g.check_at("s", Some(&nonce(14)), Some(&ts), NOW),
        Err(ReplayError::CapacityExhausted)
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(12)), Some(&ts), NOW),
        Err(ReplayError::Replayed),
        "a replay at capacity is refused, and told as a replay"
    );
    assert_eq!(g.live_nonces(), 2, "the replay took no slot");
}

#[test]
fn debug_shows_settings_and_count_but_no_nonce_or_session() {
    let g = guard(300, 30, 10);
    let n = nonce(20);
    g.check_at("session-distinctive", Some(&n), Some(&NOW.to_string()), NOW)
        .unwrap();
    let text = format!("{g:?}");
    for expected in [
        "acceptance_secs: 330",
        "max_nonces: 10",
        "live: 1",
        "enabled",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(!text.contains(&n), "{text}");
    assert!(!text.contains("session-distinctive"), "{text}");
}

#[test]
fn nonce_must_be_canonical_unpadded_base64url() {
    let good = URL_SAFE_NO_PAD.encode([0u8; 16]); // 22 chars, last one 'A'
    let padded = format!("{good}==");
    // Same 16 bytes with non-zero trailing bits: a second spelling.
    let trailing_bits = format!("{}B", &good[..21]);
    let std_alphabet = format!("{}+/", &URL_SAFE_NO_PAD.encode([0u8; 18])[..22]);
    for bad in [padded.as_str(), &trailing_bits, &std_alphabet, "é"] {
        assert_eq!(
            parse_nonce(Some(bad.as_bytes())).map(|(_, l)| l),
            Err(ReplayError::MalformedNonce),
            "{bad:?}"
        );
    }
}

#[test]
fn timestamp_accepts_only_bounded_plain_digits() {
    assert_eq!(parse_timestamp(Some(b"0")), Ok(0));
    assert_eq!(parse_timestamp(Some(b"999999999999")), Ok(999_999_999_999));
    for bad in [
        &b"+1700000000"[..],
        b"-1",
        b" 1700000000",
        b"1700000000 ",
        b"1700000000.5",
        b"1e9",
        b"9999999999999",
        b"\xff",
    ] {
        assert_eq!(
            parse_timestamp(Some(bad)),
            Err(ReplayError::MalformedTimestamp),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_timestamp(Some(b"")),
        Err(ReplayError::MissingTimestamp)
    );
}

#[test]
fn fuzz_entry_point_runs_the_parse_path() {
    let n = nonce(9);
    assert_eq!(fuzz_parse_headers(Some(n.as_bytes()), Some(b"42")), Ok(42));
    assert_eq!(
        fuzz_parse_headers(Some(b"\x00\x01"), Some(b"42")),
        Err(ReplayError::MalformedNonce)
    );
    assert_eq!(
        fuzz_parse_headers(None, None),
        Err(ReplayError::MissingNonce)
    );
}

#[test]
fn every_error_has_a_distinct_stable_code() {
    let all = [
        ReplayError::MissingNonce,
        ReplayError::MalformedNonce,
        ReplayError::MissingTimestamp,
        ReplayError::MalformedTimestamp,
        ReplayError::Stale,
        ReplayError::Future,
        ReplayError::Replayed,
        ReplayError::CapacityExhausted,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(ReplayError::code).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(ReplayError::Replayed.code(), "replay_detected");
    assert_eq!(
        ReplayError::CapacityExhausted.code(),
        "replay_capacity_exhausted"
    );
}

#[test]
fn guard_is_shareable_across_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&guard(300, 30, 10));
}

#[test]
fn timestamps_below_the_restart_floor_are_stale() {
    let g = guard(300, 30, 10);
    g.refuse_before(NOW);
    assert_eq!(
        g.check_at("s", Some(&nonce(40)), Some(&ts(NOW - 1)), NOW),
        Err(ReplayError::Stale),
        "accepted by the window, but a previous process may have seen it"
    );
    assert_eq!(
        g.check_at("s", Some(&nonce(41)), Some(&ts(NOW)), NOW),
        Ok(())
    );
    assert_eq!(g.live_nonces(), 1, "a refused request takes no slot");
}

fn shared_guard(max: u64, per_session: u64, per_subject: u64) -> ReplayGuard {
    let config = ReplayConfig {
        max_nonces: max,
        max_nonces_per_session: per_session,
        max_nonces_per_subject: per_subject,
        ..ReplayConfig::default()
    };
    ReplayGuard::new(&config, Duration::from_secs(30))
}

fn spend(g: &ReplayGuard, sid: &str, sub: &str, n: u8, at: u64) -> Result<(), ReplayError> {
    let owner = NonceOwner {
        session_id: sid,
        subject: Some(sub),
    };
    let (n, t) = (nonce(n), ts(at));
    g.check_bytes_for(owner, Some(n.as_bytes()), Some(t.as_bytes()), at)
}

#[test]
fn a_session_past_its_share_is_refused_and_others_are_not() {
    let g = shared_guard(10, 2, 3);
    assert_eq!(spend(&g, "x", "mallory", 1, NOW), Ok(()));
    assert_eq!(spend(&g, "x", "mallory", 2, NOW), Ok(()));
    assert_eq!(
        spend(&g, "x", "mallory", 3, NOW),
        Err(ReplayError::QuotaExhausted)
    );
    // Another session of the same subject: only the subject's rest.
    assert_eq!(spend(&g, "x2", "mallory", 4, NOW), Ok(()));
    assert_eq!(
        spend(&g, "x2", "mallory", 5, NOW),
        Err(ReplayError::QuotaExhausted)
    );
    assert_eq!(spend(&g, "y", "bob", 6, NOW), Ok(()));
    assert_eq!(g.live_nonces(), 4, "refusals take no slot");
    // A replay gives back what it reserved: the share is not eaten by it.
    assert_eq!(spend(&g, "y", "bob", 6, NOW), Err(ReplayError::Replayed));
    assert_eq!(spend(&g, "y", "bob", 7, NOW), Ok(()));
    // Past its share, a session's replay is still told as a replay.
    assert_eq!(
        spend(&g, "x", "mallory", 1, NOW),
        Err(ReplayError::Replayed)
    );
}

fn ts(t: u64) -> String {
    t.to_string()
}

/// A cluster client that never connects (nothing listens on port 1; the
/// connection is lazy, so building it opens no socket).
fn unreachable_cluster() -> Arc<crate::gateway::cluster::Cluster> {
    let config = crate::config::ClusterConfig {
        mode: crate::config::ClusterMode::Redis,
        url: "redis://127.0.0.1:1/0".to_owned(),
        ..crate::config::ClusterConfig::default()
    };
    let metrics = Arc::new(crate::gateway::cluster::ClusterMetrics::register(
        &mut prometheus_client::registry::Registry::default(),
    ));
    crate::gateway::cluster::Cluster::open(&config, metrics)
        .unwrap()
        .unwrap()
}

#[test]
fn standalone_begin_decides_locally() {
    let g = guard(300, 30, 10);
    let ts = NOW.to_string();
    let owner = NonceOwner {
        session_id: "s",
        subject: None,
    };
    let n = nonce(1);
    assert!(
        g.begin_bytes_for(owner, Some(n.as_bytes()), Some(ts.as_bytes()), NOW)
            .unwrap()
            .is_none()
    );
    assert!(!g.is_clustered());
    assert_eq!(
        g.begin_bytes_for(owner, Some(n.as_bytes()), Some(ts.as_bytes()), NOW)
            .err(),
        Some(ReplayError::Replayed)
    );
}

#[tokio::test]
async fn clustered_nonces_wait_for_the_fleet_and_the_sync_path_fails_closed() {
    let g = guard(300, 30, 10).with_cluster(Some(unreachable_cluster()));
    assert!(g.is_clustered());
    let ts = NOW.to_string();
    let owner = NonceOwner {
        session_id: "s",
        subject: None,
    };
    // The sync check cannot ask the fleet: refused, never accepted.
    assert_eq!(
        g.check_bytes_for(owner, Some(nonce(1).as_bytes()), Some(ts.as_bytes()), NOW),
        Err(ReplayError::Unavailable)
    );
    // A local replay is still refused locally, with no round trip.
    assert_eq!(
        g.check_bytes_for(owner, Some(nonce(1).as_bytes()), Some(ts.as_bytes()), NOW),
        Err(ReplayError::Replayed)
    );
    // A fresh nonce leaves a claim for the fleet; Redis is unreachable, so
    // the answer is `Unavailable` (503), not acceptance.
    let claim = g
        .begin_bytes_for(owner, Some(nonce(2).as_bytes()), Some(ts.as_bytes()), NOW)
        .unwrap()
        .expect("cluster mode asks the fleet");
    assert_eq!(confirm_fleet(claim).await, Err(ReplayError::Unavailable));
    // Checks before the cache never reach the fleet.
    assert_eq!(
        g.begin_bytes_for(owner, Some(b"short"), Some(ts.as_bytes()), NOW)
            .err(),
        Some(ReplayError::MalformedNonce)
    );
}

#[test]
fn unavailable_has_a_stable_code() {
    assert_eq!(ReplayError::Unavailable.code(), "replay_unavailable");
}
