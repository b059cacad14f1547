//! Session tokens: minting, verification next to the raw signature check it
//! wraps (so the overhead reads as a ratio), and the whole per-request auth
//! path minus HTTP: verify → revocation lookup (100,000 revocations loaded)
//! → replay check (a fresh nonce each request).
//!
//! The cache of verified tokens (issue 12): a hit (SHA-256 of the token,
//! lookup, key-ring generation and clock check) against a full
//! verification, and `SessionManager::authenticate_at` with the cache off
//! (the path before the cache), on a miss, and on a hit.
//!
//! NFR: "Session token validation < 1 ms" per request; a cache hit ≤ 2 µs,
//! a miss no slower than the uncached path.
//!
//! Run: `cargo bench --bench tokens`
#![allow(clippy::unwrap_used, missing_docs)] // bench setup: a panic is a failed run

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::clock::{Clock, ManualClock, SystemClock};
use clawgate::config::{AuthConfig, ReplayConfig, TokensConfig};
use clawgate::gateway::replay_protection::ReplayGuard;
use clawgate::gateway::session_manager::SessionManager;
use clawgate::gateway::session_manager::revocation_store::{Revocation, RevocationStore};
use clawgate::gateway::session_manager::verified_cache::VerifiedCache;
use clawgate::gateway::session_token::keyring::KeyRing;
use clawgate::gateway::session_token::{self, TokenDraft, TokenPolicy, TokenType, VerifiedClaims};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pasetors::Public;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use ring::signature::{ED25519, UnparsedPublicKey};

const DAY: Duration = Duration::from_secs(86_400);
const REVOCATIONS: u64 = 100_000;

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(KeyRing::open_or_init(dir.path().join("keys")).unwrap());
    let policy = TokenPolicy::new("clawgate", "clawgate", Duration::from_secs(30));
    let now = SystemTime::now();
    let draft = TokenDraft::session("alice", DAY).with_scope(["admin"]);
    let minted = session_token::mint_at(&ring, &policy, draft.clone(), now).unwrap();
    let token = minted.expose().to_owned();
    let raw = RawSignature::of(&ring, &token);

    let mut group = c.benchmark_group("session_token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mint", |b| {
        b.iter(|| black_box(session_token::mint_at(&ring, &policy, draft.clone(), now).unwrap()))
    });
    // The primitive, three ways, innermost first: ring's Ed25519 over the
    // PAE message; pasetors' v4.public verify (base64 decode, footer, PAE,
    // Ed25519; no claims), which is what verify_at calls; verify_at itself.
    group.bench_function("ed25519_verify_raw_ring", |b| {
        b.iter(|| black_box(raw.verify()))
    });
    let key = ring.signer().unwrap();
    let public = ring.verifying_key(key.kid()).unwrap();
    group.bench_function("pasetors_public_verify_no_claims", |b| {
        b.iter(|| {
            let untrusted = UntrustedToken::<Public, V4>::try_from(black_box(token.as_str()));
            black_box(PublicToken::verify(
                public.public_key(),
                &untrusted.unwrap(),
                None,
                None,
            ))
            .unwrap()
        })
    });
    group.bench_function("verify_at", |b| {
        b.iter(|| black_box(verify(&ring, &policy, &token, now)))
    });
    group.finish();

    auth_path(c, &ring, &policy, &token, now);
    verified_cache(c, &ring, &policy, &token);
}

/// The verified-token cache alone, then the manager's whole authenticate
/// (cache, revocation set, binding policy) with the cache off, missing and
/// hitting. The clock is read in every iteration, as the gateway does.
fn verified_cache(c: &mut Criterion, ring: &Arc<KeyRing>, policy: &TokenPolicy, token: &str) {
    let mut group = c.benchmark_group("verified_cache");
    group.throughput(Throughput::Elements(1));
    let cache = VerifiedCache::new(10_000, policy.leeway);
    let verify_now =
        || session_token::verify_at(ring, policy, token, TokenType::Session, SystemTime::now());
    cache
        .get_or_verify(token, ring, SystemTime::now(), verify_now)
        .unwrap();
    group.bench_function("hit_lookup_and_clock_check", |b| {
        b.iter(|| {
            let claims = cache.get_or_verify(black_box(token), ring, SystemClock.now(), || {
                Err("a hit never verifies")
            });
            black_box(claims.unwrap())
        })
    });
    group.finish();

    let state = tempfile::tempdir().unwrap();
    let manager = |entries: u64| {
        let tokens = TokensConfig {
            verified_cache_entries: entries,
            ..TokensConfig::default()
        };
        let auth = AuthConfig {
            pairing: false,
            ..AuthConfig::default()
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (store, _) = RevocationStore::open(state.path(), Arc::clone(&clock));
        SessionManager::from_parts(&tokens, &auth, Arc::clone(ring), Arc::new(store), clock)
            .unwrap()
    };
    let (off, on) = (manager(0), manager(10_000));
    let fresh_token = || {
        let draft = TokenDraft::session("alice", DAY).with_scope(["admin"]);
        session_token::mint_at(ring, policy, draft, SystemTime::now())
            .unwrap()
            .expose()
            .to_owned()
    };
    let mut group = c.benchmark_group("authenticate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cache_off", |b| {
        b.iter(|| black_box(off.authenticate_at(token, SystemClock.now()).unwrap()))
    });
    // A token never seen: lookup, full verification, insert (setup mints
    // a fresh token per iteration, outside the timing).
    group.bench_function("cache_miss", |b| {
        b.iter_batched(
            fresh_token,
            |fresh| black_box(on.authenticate_at(&fresh, SystemClock.now()).unwrap()),
            BatchSize::SmallInput,
        )
    });
    on.authenticate_at(token, SystemClock.now()).unwrap();
    group.bench_function("cache_hit", |b| {
        b.iter(|| black_box(on.authenticate_at(token, SystemClock.now()).unwrap()))
    });
    group.finish();
    assert!(on.verified_cache().lookups().hits() > 0);
}

/// verify_at + revocation lookup + replay check: the auth layer's work per
/// unsafe request, without HTTP.
fn auth_path(
    c: &mut Criterion,
    ring: &KeyRing,
    policy: &TokenPolicy,
    token: &str,
    now: SystemTime,
) {
    let state = tempfile::tempdir().unwrap();
    let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let revocations = load_revocations(state.path(), REVOCATIONS, unix);
    revocations.run_pending_tasks();
    assert_eq!(revocations.len(), REVOCATIONS);
    let ts = unix.to_string();
    let mut group = c.benchmark_group("auth_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_revocation_replay_100k_revoked", |b| {
        // A fresh guard per sample bounds memory (every request leaves a
        // nonce behind); encoding the nonce (~50 ns) is inside the timing.
        b.iter_custom(|iters| {
            let guard = replay_guard();
            let start = Instant::now();
            for i in 0..iters {
                let claims = verify(ring, policy, token, now);
                let c = claims.claims();
                let iat = c.iat.duration_since(UNIX_EPOCH).unwrap().as_secs();
                assert!(!revocations.is_revoked_at(
                    c.jti.as_str(),
                    c.sid.as_str(),
                    c.sub.as_str(),
                    iat,
                    unix
                ));
                let nonce = URL_SAFE_NO_PAD.encode(u128::from(i).to_le_bytes());
                guard
                    .check_at(claims.sid(), Some(&nonce), Some(&ts), unix)
                    .unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn verify(ring: &KeyRing, policy: &TokenPolicy, token: &str, now: SystemTime) -> VerifiedClaims {
    session_token::verify_at(ring, policy, token, TokenType::Session, now).unwrap()
}

fn replay_guard() -> ReplayGuard {
    let config = ReplayConfig {
        max_nonces: u64::MAX,
        // One bench session spends every nonce: no fair share applies.
        max_nonces_per_session: u64::MAX,
        max_nonces_per_subject: u64::MAX,
        ..ReplayConfig::default()
    };
    ReplayGuard::new(&config, Duration::from_secs(30))
}

/// Opens a store whose journal holds `n` live token revocations, as a
/// gateway does at start-up (writing them one `revoke` at a time would cost
/// an fsync each).
fn load_revocations(dir: &Path, n: u64, now: u64) -> RevocationStore {
    let mut journal = String::new();
    for i in 0..n {
        let revocation = Revocation::token(
            URL_SAFE_NO_PAD.encode([i.to_le_bytes(); 4].concat()),
            now + 86_400,
        );
        let mut line = serde_json::to_value(&revocation).unwrap();
        line["at"] = now.into();
        journal.push_str(&line.to_string());
        journal.push('\n');
    }
    // The journal's file name (revocation_store module docs).
    std::fs::write(dir.join("revocations.jsonl"), journal).unwrap();
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(now)));
    let (store, report) = RevocationStore::open(dir, clock);
    assert_eq!(report.loaded as u64, n);
    store
}

/// The Ed25519 check inside a v4.public token, extracted once: the PAE
/// message (PASETO spec: PAE(header, payload, footer, implicit)), the
/// signature and the public key.
struct RawSignature {
    message: Vec<u8>,
    signature: Vec<u8>,
    public: Vec<u8>,
}

impl RawSignature {
    fn of(ring: &KeyRing, token: &str) -> Self {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token).unwrap();
        let payload = untrusted.untrusted_payload();
        let signature = untrusted.untrusted_message()[payload.len()..].to_vec();
        let pieces: [&[u8]; 4] = [b"v4.public.", payload, untrusted.untrusted_footer(), b""];
        let mut message = (pieces.len() as u64).to_le_bytes().to_vec();
        for piece in pieces {
            message.extend_from_slice(&(piece.len() as u64).to_le_bytes());
            message.extend_from_slice(piece);
        }
        let kid = ring.signer().unwrap().kid().to_owned();
        let public = ring
            .verifying_key(&kid)
            .unwrap()
            .public_key()
            .as_bytes()
            .to_vec();
        let raw = Self {
            message,
            signature,
            public,
        };
        assert!(raw.verify(), "the extracted signature must verify");
        raw
    }

    fn verify(&self) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(&self.message, &self.signature)
            .is_ok()
    }
}

criterion_group!(benches, tokens);
criterion_main!(benches);
