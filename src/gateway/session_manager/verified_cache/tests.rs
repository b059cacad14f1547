#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use super::*;
use crate::gateway::session_token::keyring;
use crate::gateway::session_token::{TokenDraft, TokenError, TokenPolicy, TokenType};

const LEEWAY: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(3600);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000 + secs)
}

fn policy() -> TokenPolicy {
    TokenPolicy::new("clawgate", "clawgate", LEEWAY)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ring: KeyRing,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let ring = KeyRing::open_or_init_at(&dir, at(0)).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        ring,
    }
}

fn mint(ring: &KeyRing, now: SystemTime) -> String {
    let draft = TokenDraft::session("alice", TTL);
    session_token::mint_at(ring, &policy(), draft, now)
        .unwrap()
        .expose()
        .to_owned()
}

/// `get_or_verify` with the real verifier; also reports whether it ran.
fn lookup(
    cache: &VerifiedCache,
    ring: &KeyRing,
    token: &str,
    now: SystemTime,
) -> (Result<Arc<VerifiedClaims>, TokenError>, bool) {
    let mut verified = false;
    let result = cache.get_or_verify(token, ring, now, || {
        verified = true;
        session_token::verify_at(ring, &policy(), token, TokenType::Session, now)
    });
    (result, verified)
}

#[test]
fn a_verified_token_is_served_from_the_cache_with_shared_claims() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let token = mint(&f.ring, at(0));
    let (first, verified) = lookup(&cache, &f.ring, &token, at(1));
    assert!(verified, "the first use is a full verification");
    let (second, verified) = lookup(&cache, &f.ring, &token, at(2));
    assert!(!verified, "the second use is a hit");
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(
        Arc::ptr_eq(&first, &second),
        "claims are shared, not copied"
    );
    assert_eq!(second.sub(), "alice");
    assert_eq!((cache.lookups().hits(), cache.lookups().misses()), (1, 1));
    assert!(cache.contains(&token));
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_failed_verification_is_never_cached() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let good = mint(&f.ring, at(0));
    // One byte of the signature changed: same claims, same kid.
    let mut bytes = good.clone().into_bytes();
    let i = good.rfind('.').unwrap() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    let other_ring = fixture();
    let unknown_kid = mint(&other_ring.ring, at(0));
    let expired = mint(&f.ring, at(0));
    let cases: [(&str, SystemTime, TokenError); 4] = [
        (&forged, at(1), TokenError::BadSignature),
        (&unknown_kid, at(1), TokenError::UnknownKey),
        (&expired, at(TTL.as_secs() + 31), TokenError::Expired),
        ("v4.public.garbage", at(1), TokenError::BadFooter),
    ];
    for (token, now, error) in cases {
        for _ in 0..2 {
            let (result, verified) = lookup(&cache, &f.ring, token, now);
            assert_eq!(result.unwrap_err(), error);
            assert!(verified, "every attempt is fully verified");
            assert!(!cache.contains(token));
        }
    }
    assert_eq!(cache.len(), 0);
    assert_eq!((cache.lookups().hits(), cache.lookups().misses()), (0, 8));
}

#[test]
fn a_cached_token_past_its_exp_is_a_miss_and_refused() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let token = mint(&f.ring, at(0));
    assert!(lookup(&cache, &f.ring, &token, at(1)).0.is_ok());
    // Within the leeway after exp: still a hit.
    let last = at(TTL.as_secs() + LEEWAY.as_secs() - 1);
    let (result, verified) = lookup(&cache, &f.ring, &token, last);
    assert!(result.is_ok() && !verified);
    // At exp + leeway the hit is refused and the full check says why.
    let (result, verified) = lookup(&cache, &f.ring, &token, last + Duration::from_secs(1));
    assert_eq!(result.unwrap_err(), TokenError::Expired);
    assert!(verified);
    assert!(!cache.contains(&token), "the stale entry was dropped");
}

#[test]
fn a_clock_moved_back_before_nbf_is_a_miss() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let token = mint(&f.ring, at(100));
    assert!(lookup(&cache, &f.ring, &token, at(100)).0.is_ok());
    let (result, verified) = lookup(&cache, &f.ring, &token, at(100 - 31));
    assert_eq!(result.unwrap_err(), TokenError::NotYetValid);
    assert!(verified);
}

#[test]
fn a_pruned_key_invalidates_its_cached_tokens_at_once() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let old = mint(&f.ring, at(0));
    assert!(lookup(&cache, &f.ring, &old, at(1)).0.is_ok());
    keyring::rotate(&f.dir, at(10)).unwrap();
    f.ring.reload();
    let new = mint(&f.ring, at(10));
    assert!(lookup(&cache, &f.ring, &new, at(11)).0.is_ok());
    // A rotation removes nothing: both stay hits.
    let generation = f.ring.generation();
    for token in [&old, &new] {
        let (result, verified) = lookup(&cache, &f.ring, token, at(12));
        assert!(result.is_ok() && !verified);
    }
    let pruned = keyring::prune(&f.dir, Duration::ZERO, at(20)).unwrap();
    assert_eq!(pruned.len(), 1);
    assert!(!f.ring.reload().removed.is_empty());
    assert_eq!(f.ring.generation(), generation + 1);
    let (result, verified) = lookup(&cache, &f.ring, &old, at(21));
    assert_eq!(result.unwrap_err(), TokenError::UnknownKey);
    assert!(verified);
    assert!(!cache.contains(&old));
    // A surviving key's token is verified once more, then cached again
    // under the new generation.
    let (result, verified) = lookup(&cache, &f.ring, &new, at(21));
    assert!(result.is_ok() && verified);
    let (result, verified) = lookup(&cache, &f.ring, &new, at(22));
    assert!(result.is_ok() && !verified);
}

#[test]
fn a_removal_during_verification_leaves_a_stale_entry() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let old = mint(&f.ring, at(0));
    keyring::rotate(&f.dir, at(10)).unwrap();
    f.ring.reload();
    // The key goes while the verification of a token it signed runs: the
    // entry carries the generation read before, so it is never a hit.
    let result = cache.get_or_verify(&old, &f.ring, at(21), || {
        let claims = session_token::verify_at(&f.ring, &policy(), &old, TokenType::Session, at(21));
        keyring::prune(&f.dir, Duration::ZERO, at(20)).unwrap();
        f.ring.reload();
        claims
    });
    assert!(result.is_ok());
    let (result, verified) = lookup(&cache, &f.ring, &old, at(22));
    assert_eq!(result.unwrap_err(), TokenError::UnknownKey);
    assert!(verified);
}

#[test]
fn with_zero_entries_nothing_is_cached_or_counted() {
    let f = fixture();
    let cache = VerifiedCache::new(0, LEEWAY);
    assert!(!cache.is_enabled());
    let token = mint(&f.ring, at(0));
    for _ in 0..3 {
        let (result, verified) = lookup(&cache, &f.ring, &token, at(1));
        assert!(result.is_ok() && verified);
    }
    assert!(!cache.contains(&token));
    assert_eq!(cache.len(), 0);
    assert_eq!((cache.lookups().hits(), cache.lookups().misses()), (0, 0));
}

#[test]
fn the_cache_holds_at_most_its_capacity() {
    let f = fixture();
    let cache = VerifiedCache::new(3, LEEWAY);
    for _ in 0..20 {
        let token = mint(&f.ring, at(0));
        assert!(lookup(&cache, &f.ring, &token, at(1)).0.is_ok());
    }
    assert!(cache.len() <= 3, "{}", cache.len());
}

#[test]
fn the_key_is_the_whole_token() {
    let f = fixture();
    let cache = VerifiedCache::new(100, LEEWAY);
    let token = mint(&f.ring, at(0));
    assert!(lookup(&cache, &f.ring, &token, at(1)).0.is_ok());
    // The same bytes with a suffix, or a prefix of them, never hit.
    for other in [format!("{token}A"), token[..token.len() - 1].to_owned()] {
        let (result, verified) = lookup(&cache, &f.ring, &other, at(2));
        assert!(result.is_err() && verified, "{other}");
    }
    assert_ne!(TokenKey::of(&token).0, TokenKey::of(&format!("{token}A")).0);
}
