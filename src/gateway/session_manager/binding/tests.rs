#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::proof::{WireProof, format_iat, sign};
use super::*;
use crate::config::ReplayConfig;

const NOW: u64 = 1_700_000_000;
const TOKEN: &str = "v4.public.session-token-stand-in";

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

fn checker(max_nonces: u64) -> ProofChecker {
    let config = ReplayConfig {
        window: Duration::from_secs(300),
        max_nonces,
        ..ReplayConfig::default()
    };
    ProofChecker::new(Arc::new(ReplayGuard::new(&config, Duration::from_secs(30))))
}

fn key_bound(key: &ClientKey) -> Confirmation {
    Confirmation {
        kpid: Some(key.kpid().to_owned()),
        x5t_s256: None,
    }
}

fn presented<'a>(proof: &'a str, token: &'a str) -> Presented<'a> {
    Presented {
        method: "POST",
        uri: "/v1/items?x=1",
        token,
        proof: Some(proof.as_bytes()),
        client_cert_sha256: None,
    }
}

fn verify(proof: &str, key: &ClientKey) -> Result<VerifiedProof, BindingError> {
    let request = ProofRequest {
        method: "POST",
        uri: "/v1/items?x=1",
        token: TOKEN,
    };
    verify_proof(proof.as_bytes(), key.kpid(), &request)
}

fn wire(key: &ClientKey) -> WireProof {
    WireProof {
        htm: "POST".into(),
        htu: "/v1/items?x=1".into(),
        iat: format_iat(NOW as i64).unwrap(),
        jti: URL_SAFE_NO_PAD.encode([7u8; 16]),
        ath: token_hash(TOKEN),
        key: key.public_paserk().to_owned(),
    }
}

#[test]
fn a_signed_proof_verifies_and_carries_its_time_and_nonce() {
    let key = ClientKey::generate().unwrap();
    let proof = key
        .sign_proof_with_jti_at(
            "POST",
            "/v1/items?x=1",
            TOKEN,
            "A".repeat(22).as_str(),
            at(NOW),
        )
        .unwrap();
    let verified = verify(&proof, &key).unwrap();
    assert_eq!(verified.iat, NOW as i64);
    assert_eq!(verified.jti, "A".repeat(22));
}

#[test]
fn each_request_mismatch_has_its_own_error() {
    let key = ClientKey::generate().unwrap();
    let sign = |m: &str, u: &str, t: &str| key.sign_proof_at(m, u, t, at(NOW)).unwrap();
    let cases = [
        (
            sign("GET", "/v1/items?x=1", TOKEN),
            BindingError::MethodMismatch,
        ),
        (
            sign("post", "/v1/items?x=1", TOKEN),
            BindingError::MethodMismatch,
        ),
        (
            sign("POST", "/v1/items?x=2", TOKEN),
            BindingError::UriMismatch,
        ),
        (sign("POST", "/v1/items", TOKEN), BindingError::UriMismatch),
        (
            sign("POST", "/v1/items?x=1", "v4.public.other"),
            BindingError::TokenMismatch,
        ),
    ];
    for (proof, expected) in cases {
        assert_eq!(verify(&proof, &key), Err(expected));
    }
}

#[test]
fn a_proof_by_another_key_is_a_key_mismatch_before_any_signature_check() {
    let bound = ClientKey::generate().unwrap();
    let other = ClientKey::generate().unwrap();
    let by_other = other
        .sign_proof_at("POST", "/v1/items?x=1", TOKEN, at(NOW))
        .unwrap();
    assert_eq!(verify(&by_other, &bound), Err(BindingError::KeyMismatch));
    // Naming the bound key but signed by another: the signature fails.
    let forged = sign(&other.secret_for_tests(), &wire(&bound)).unwrap();
    assert_eq!(verify(&forged, &bound), Err(BindingError::BadSignature));
}

#[test]
fn malformed_proofs_are_refused_before_any_key_is_read() {
    let key = ClientKey::generate().unwrap();
    let good = key
        .sign_proof_at("POST", "/v1/items?x=1", TOKEN, at(NOW))
        .unwrap();
    let body = good.strip_prefix("v4.public.").unwrap();
    let mut bad_jti = wire(&key);
    bad_jti.jti = "short".into();
    let mut bad_iat = wire(&key);
    bad_iat.iat = "1700000000".into();
    let mut secret_as_key = wire(&key);
    secret_as_key.key = key.to_paserk().unwrap().to_string();
    let cases = [
        format!("v4.local.{body}"),
        format!("v3.public.{body}"),
        format!("{good}.eyJraWQiOiJ4In0"),
        format!("{good}="),
        "v4.public.".to_owned(),
        format!("v4.public.{}", "A".repeat(MAX_PROOF_LEN)),
        sign(&key.secret_for_tests(), &bad_jti).unwrap(),
        sign(&key.secret_for_tests(), &bad_iat).unwrap(),
        sign(&key.secret_for_tests(), &secret_as_key).unwrap(),
    ];
    for proof in cases {
        assert_eq!(
            verify(&proof, &key),
            Err(BindingError::ProofMalformed),
            "{proof}"
        );
    }
    let not_utf8 = [b'v', b'4', 0xff];
    let request = ProofRequest {
        method: "POST",
        uri: "/",
        token: TOKEN,
    };
    assert_eq!(
        verify_proof(&not_utf8, key.kpid(), &request),
        Err(BindingError::ProofMalformed)
    );
}

#[test]
fn checker_spends_each_nonce_once_and_enforces_the_window() {
    let key = ClientKey::generate().unwrap();
    let c = checker(100);
    let cnf = key_bound(&key);
    let check = |proof: &str| c.check_at(Some(&cnf), "sid", &presented(proof, TOKEN), NOW);
    let proof = key
        .sign_proof_at("POST", "/v1/items?x=1", TOKEN, at(NOW))
        .unwrap();
    let ok = check(&proof).unwrap();
    assert!(ok.proof_verified && !ok.certificate_verified);
    assert_eq!(check(&proof), Err(BindingError::ProofReplayed));
    let proof_at_now = proof;
    // The window is 300 s plus 30 s of leeway either way.
    for (offset, expected) in [
        (-331, Err(BindingError::ProofStale)),
        (-330, Ok(())),
        (330, Ok(())),
        (331, Err(BindingError::ProofFuture)),
    ] {
        let when = at(NOW.checked_add_signed(offset).unwrap());
        let proof = key
            .sign_proof_at("POST", "/v1/items?x=1", TOKEN, when)
            .unwrap();
        assert_eq!(check(&proof).map(drop), expected, "offset {offset}");
    }
    // Nonces are scoped per session: the same proof under another session
    // is another request (its token hash would differ in practice).
    let other = c.check_at(Some(&cnf), "sid-2", &presented(&proof_at_now, TOKEN), NOW);
    assert!(other.is_ok(), "{other:?}");
}

#[test]
fn checker_fails_closed_when_the_nonce_cache_is_full() {
    let key = ClientKey::generate().unwrap();
    let c = checker(1);
    let cnf = key_bound(&key);
    let sign = || {
        key.sign_proof_at("POST", "/v1/items?x=1", TOKEN, at(NOW))
            .unwrap()
    };
    let (first, second) = (sign(), sign());
    c.check_at(Some(&cnf), "sid", &presented(&first, TOKEN), NOW)
        .unwrap();
    assert_eq!(
        c.check_at(Some(&cnf), "sid", &presented(&second, TOKEN), NOW),
        Err(BindingError::CapacityExhausted)
    );
}

#[test]
fn unbound_tokens_pass_and_bound_ones_need_their_proof_or_certificate() {
    let key = ClientKey::generate().unwrap();
    let c = checker(10);
    let none = Presented {
        proof: None,
        ..presented("", TOKEN)
    };
    assert_eq!(
        c.check_at(None, "sid", &none, NOW),
        Ok(Confirmed::default())
    );
    assert_eq!(
        c.check_at(Some(&key_bound(&key)), "sid", &none, NOW),
        Err(BindingError::ProofMissing)
    );
    let hex = "ab".repeat(32);
    let cert = Confirmation {
        kpid: None,
        x5t_s256: certificate_thumbprint(&hex),
    };
    assert_eq!(
        c.check_at(Some(&cert), "sid", &none, NOW),
        Err(BindingError::CertificateMissing)
    );
    let other_cert = "cd".repeat(32);
    let with = |cert| Presented {
        client_cert_sha256: Some(cert),
        ..none
    };
    assert_eq!(
        c.check_at(Some(&cert), "sid", &with(&other_cert), NOW),
        Err(BindingError::CertificateMismatch)
    );
    let ok = c.check_at(Some(&cert), "sid", &with(&hex), NOW).unwrap();
    assert!(ok.certificate_verified && !ok.proof_verified);
}

#[test]
fn certificate_thumbprint_is_base64url_of_the_hex_digest() {
    // SHA-256 of the empty string, in both notations.
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(
        certificate_thumbprint(hex).as_deref(),
        Some("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")
    );
    assert_eq!(
        certificate_thumbprint(&hex.to_uppercase()),
        certificate_thumbprint(hex)
    );
    for bad in ["", "e3", &hex[..62], &format!("{}zz", &hex[..62])] {
        assert_eq!(certificate_thumbprint(bad), None, "{bad}");
    }
}

#[test]
fn requested_confirmation_binds_what_was_asked_for() {
    let key = ClientKey::generate().unwrap();
    let hex = "ab".repeat(32);
    assert_eq!(requested_confirmation(None, false, Some(&hex)), Ok(None));
    let by_key = requested_confirmation(Some(key.public_paserk()), false, None)
        .unwrap()
        .unwrap();
    assert_eq!(by_key.kpid.as_deref(), Some(key.kpid()));
    assert_eq!(by_key.x5t_s256, None);
    let both = requested_confirmation(Some(key.public_paserk()), true, Some(&hex))
        .unwrap()
        .unwrap();
    assert_eq!(both.x5t_s256, certificate_thumbprint(&hex));
    assert_eq!(
        requested_confirmation(None, true, None),
        Err(BindingError::CertificateRequired)
    );
    let secret = key.to_paserk().unwrap();
    for bad in [secret.as_str(), "k4.public.", "k3.public.AAAA", "nonsense"] {
        assert_eq!(
            requested_confirmation(Some(bad), false, None),
            Err(BindingError::InvalidClientKey)
        );
    }
}

#[test]
fn require_unbound_refuses_any_binding() {
    let key = ClientKey::generate().unwrap();
    assert_eq!(require_unbound(None), Ok(()));
    assert_eq!(
        require_unbound(Some(&key_bound(&key))),
        Err(BindingError::ProofMissing)
    );
    let cert = Confirmation {
        kpid: None,
        x5t_s256: Some("x".into()),
    };
    assert_eq!(
        require_unbound(Some(&cert)),
        Err(BindingError::CertificateMissing)
    );
}

#[test]
fn client_key_round_trips_and_debug_shows_no_secret() {
    let key = ClientKey::generate().unwrap();
    let secret = key.to_paserk().unwrap();
    assert!(secret.starts_with("k4.secret."));
    let again = ClientKey::from_paserk(&format!("{}\n", secret.as_str())).unwrap();
    assert_eq!(again.kpid(), key.kpid());
    assert_eq!(client_key_id(key.public_paserk()).unwrap(), key.kpid());
    let shown = format!("{key:?}");
    let seed = &secret["k4.secret.".len()..];
    assert!(!shown.contains(seed), "{shown}");
    assert!(shown.contains(key.kpid()), "{shown}");
    assert_eq!(
        ClientKey::from_paserk(key.public_paserk()).unwrap_err(),
        ClientKeyError::InvalidKey
    );
}

#[test]
fn error_codes_are_distinct() {
    let all = [
        BindingError::ProofMissing,
        BindingError::ProofMalformed,
        BindingError::KeyMismatch,
        BindingError::BadSignature,
        BindingError::MethodMismatch,
        BindingError::UriMismatch,
        BindingError::TokenMismatch,
        BindingError::ProofStale,
        BindingError::ProofFuture,
        BindingError::ProofReplayed,
        BindingError::CapacityExhausted,
        BindingError::CertificateMissing,
        BindingError::CertificateMismatch,
        BindingError::InvalidClientKey,
        BindingError::CertificateRequired,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(BindingError::code).collect();
    assert_eq!(codes.len(), all.len());
}
