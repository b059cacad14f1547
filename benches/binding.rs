//! Session binding: what a proof adds per request. Proof verification
//! (parse → key id → Ed25519 → claims) and the full check (plus the nonce
//! cache) next to session-token verification and a raw Ed25519 verify, so
//! the overhead reads as a ratio; and the client's cost to sign a proof.
//!
//! Run: `cargo bench --bench binding`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // bench setup: a panic is a failed run

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawgate::config::ReplayConfig;
use clawgate::gateway::replay_protection::ReplayGuard;
use clawgate::gateway::session_manager::binding::{
    ClientKey, Presented, ProofChecker, ProofRequest, verify_proof,
};
use clawgate::gateway::session_token::keyring::KeyRing;
use clawgate::gateway::session_token::{self, Confirmation, TokenDraft, TokenPolicy, TokenType};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

const URI: &str = "/v1/chat/completions?stream=true";

fn binding(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_init(dir.path().join("keys")).unwrap();
    let policy = TokenPolicy::new("clawgate", "clawgate", Duration::from_secs(30));
    let client = ClientKey::generate().unwrap();
    let cnf = Confirmation {
        kpid: Some(client.kpid().to_owned()),
        x5t_s256: None,
    };
    let now = SystemTime::now();
    let draft = TokenDraft::session("alice", Duration::from_secs(3600))
        .with_scope(["read", "write"])
        .with_cnf(cnf.clone());
    let minted = session_token::mint_at(&ring, &policy, draft, now).unwrap();
    let token = minted.expose().to_owned();
    let proof = client.sign_proof_at("POST", URI, &token, now).unwrap();
    let request = ProofRequest {
        method: "POST",
        uri: URI,
        token: &token,
    };
    // A raw Ed25519 verify of a message the size of a proof's PAE input.
    let seed = [7u8; 32];
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let message = vec![0x5a; proof.len() * 3 / 4];
    let signature = pair.sign(&message);
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    let guard = ReplayConfig {
        max_nonces: 100_000_000,
        // One bench session spends every nonce: no fair share applies.
        max_nonces_per_session: u64::MAX,
        max_nonces_per_subject: u64::MAX,
        ..ReplayConfig::default()
    };
    let checker = ProofChecker::new(Arc::new(ReplayGuard::new(&guard, Duration::from_secs(30))));
    let unix_now = now.duration_since(UNIX_EPOCH).unwrap().as_secs();

    let mut group = c.benchmark_group("binding");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), signature.as_ref())
                .unwrap()
        })
    });
    group.bench_function("session_token_verify", |b| {
        b.iter(|| {
            black_box(
                session_token::verify_at(
                    &ring,
                    &policy,
                    black_box(&token),
                    TokenType::Session,
                    now,
                )
                .unwrap(),
            )
        })
    });
    group.bench_function("proof_verify", |b| {
        b.iter(|| {
            black_box(verify_proof(black_box(proof.as_bytes()), client.kpid(), &request).unwrap())
        })
    });
    group.bench_function("proof_check_with_nonce", |b| {
        b.iter_batched(
            || client.sign_proof_at("POST", URI, &token, now).unwrap(),
            |fresh| {
                let presented = Presented {
                    method: "POST",
                    uri: URI,
                    token: &token,
                    proof: Some(fresh.as_bytes()),
                    client_cert_sha256: None,
                };
                black_box(
                    checker
                        .check_at(Some(&cnf), "sid", &presented, unix_now)
                        .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("client_sign_proof", |b| {
        b.iter(|| black_box(client.sign_proof_at("POST", URI, &token, now).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = binding
}
criterion_main!(benches);
