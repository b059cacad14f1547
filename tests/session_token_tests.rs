//! Session tokens with real keys in temporary directories: the round trip,
//! one test per rejection class, and interoperability with plain pasetors.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::gateway::session_token::keyring::{self, KeyRing};
use clawgate::gateway::session_token::{
    self as st, Confirmation, MAX_TOKEN_LEN, MintedToken, TokenDraft, TokenError, TokenPolicy,
    TokenType, VerifiedClaims,
};
use pasetors::claims::{Claims as PasetoClaims, ClaimsValidationRules};
use pasetors::footer::Footer;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const LEEWAY: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3_600);

struct Fixture {
    _tmp: TempDir,
    ring: KeyRing,
    policy: TokenPolicy,
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_init_at(tmp.path().join("keys"), t0()).unwrap();
    let policy = TokenPolicy::new("clawgate", "clawgate-api", LEEWAY);
    Fixture {
        _tmp: tmp,
        ring,
        policy,
    }
}

fn mint(f: &Fixture, draft: TokenDraft) -> MintedToken {
    st::mint_at(&f.ring, &f.policy, draft, t0()).unwrap()
}

fn session(f: &Fixture) -> MintedToken {
    mint(
        f,
        TokenDraft::session("alice", HOUR).with_scope(["read", "admin"]),
    )
}

fn verify_session(f: &Fixture, token: &str, now: SystemTime) -> Result<VerifiedClaims, TokenError> {
    st::verify_at(&f.ring, &f.policy, token, TokenType::Session, now)
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signer_secret(f: &Fixture) -> AsymmetricSecretKey<V4> {
    let file = &f.ring.keys()[0].file;
    let line = fs::read_to_string(file).unwrap();
    AsymmetricSecretKey::<V4>::try_from(line.trim()).unwrap()
}

fn kid_footer(kid: &str) -> String {
    format!(r#"{{"kid":"{kid}"}}"#)
}

/// A valid payload at `t0` in our shape, with `changes` applied (`null`
/// removes a claim).
fn payload(changes: &Value) -> String {
    let id = b64(&[7u8; 32]);
    let mut claims = json!({
        "iss": "clawgate", "sub": "alice", "aud": "clawgate-api",
        "exp": rfc3339(t0() + HOUR), "nbf": rfc3339(t0()), "iat": rfc3339(t0()),
        "jti": id, "typ": "session", "sid": id, "auth_time": rfc3339(t0()),
    });
    for (k, v) in changes.as_object().unwrap() {
        match v {
            Value::Null => claims.as_object_mut().unwrap().remove(k),
            v => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    claims.to_string()
}

/// Signs `payload` and `footer` with the ring's signer, as any PASETO v4
/// implementation would: a rejection is then due to the content alone.
fn sign_raw(f: &Fixture, payload: &str, footer: Option<&str>) -> String {
    let secret = signer_secret(f);
    PublicToken::sign(&secret, payload.as_bytes(), footer.map(str::as_bytes), None).unwrap()
}

fn sign_ours(f: &Fixture, payload: &str) -> String {
    let kid = f.ring.signer().unwrap().kid().to_owned();
    sign_raw(f, payload, Some(&kid_footer(&kid)))
}

fn parts(token: &str) -> (Vec<u8>, String) {
    let rest = token.strip_prefix("v4.public.").unwrap();
    let (body, footer) = rest.split_once('.').unwrap();
    (URL_SAFE_NO_PAD.decode(body).unwrap(), footer.to_owned())
}

fn assemble(body: &[u8], footer: &str) -> String {
    format!("v4.public.{}.{footer}", b64(body))
}

#[test]
fn session_token_round_trip_carries_every_claim() {
    let f = fixture();
    let minted = session(&f);
    let v = verify_session(&f, minted.expose(), t0()).unwrap();
    assert_eq!(v.claims(), minted.claims());
    assert_eq!(v.sub(), "alice");
    assert_eq!(v.scopes(), ["read", "admin"]);
    assert!(v.has_scope("admin") && !v.has_scope("adm"));
    assert_eq!(v.token_type(), TokenType::Session);
    assert_eq!(v.iat(), t0());
    assert_eq!(v.exp(), t0() + HOUR);
    assert_eq!(v.auth_time(), t0());
    assert_eq!(v.kid(), f.ring.signer().unwrap().kid());
    assert_eq!(v.cnf(), None);
    assert_eq!(v.claims().iss, "clawgate");
    assert_eq!(v.claims().aud, "clawgate-api");
}

#[test]
fn refresh_keeps_the_session_id_and_authentication_time_of_the_login() {
    let f = fixture();
    let login = mint(&f, TokenDraft::refresh("alice", HOUR));
    let later = t0() + Duration::from_secs(600);
    let draft = TokenDraft::refresh("alice", HOUR)
        .with_sid(login.claims().sid.clone())
        .with_auth_time(login.claims().auth_time);
    let next = st::mint_at(&f.ring, &f.policy, draft, later).unwrap();
    let v = st::verify_at(&f.ring, &f.policy, next.expose(), TokenType::Refresh, later).unwrap();
    assert_eq!(v.sid(), login.claims().sid);
    assert_eq!(v.auth_time(), t0());
    assert_eq!(v.iat(), later);
    assert_ne!(v.jti(), login.claims().jti);
}

#[test]
fn payload_signed_by_another_implementation_in_our_shape_verifies() {
    // Guards the rejection tests below: the raw signer itself produces
    // acceptable tokens, so each rejection comes from the one change made.
    let f = fixture();
    let token = sign_ours(&f, &payload(&json!({})));
    assert_eq!(verify_session(&f, &token, t0()).unwrap().sub(), "alice");
}

#[test]
fn expired_token_is_rejected_once_the_leeway_has_passed() {
    let f = fixture();
    let token = session(&f);
    let exp = t0() + HOUR;
    assert!(verify_session(&f, token.expose(), exp + LEEWAY - Duration::from_secs(1)).is_ok());
    assert_eq!(
        verify_session(&f, token.expose(), exp + LEEWAY).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn token_not_yet_valid_is_rejected_beyond_the_leeway() {
    let f = fixture();
    let nbf = t0() + Duration::from_secs(100);
    let token = sign_ours(&f, &payload(&json!({ "nbf": rfc3339(nbf) })));
    assert_eq!(
        verify_session(&f, &token, t0()).unwrap_err(),
        TokenError::NotYetValid
    );
    assert!(verify_session(&f, &token, nbf - LEEWAY).is_ok());
}

#[test]
fn iat_in_the_future_is_rejected_beyond_the_leeway_and_accepted_within() {
    let f = fixture();
    let ahead = |secs| {
        payload(
            &json!({ "nbf": rfc3339(t0() - HOUR), "iat": rfc3339(t0() + Duration::from_secs(secs)) }),
        )
    };
    let far = sign_ours(&f, &ahead(LEEWAY.as_secs() + 1));
    assert_eq!(
        verify_session(&f, &far, t0()).unwrap_err(),
        TokenError::IssuedInFuture
    );
    let near = sign_ours(&f, &ahead(LEEWAY.as_secs()));
    assert!(verify_session(&f, &near, t0()).is_ok());
}

#[test]
fn verifier_whose_clock_is_behind_accepts_a_fresh_token_within_the_leeway() {
    let f = fixture();
    let token = session(&f);
    assert!(verify_session(&f, token.expose(), t0() - LEEWAY).is_ok());
    let too_far = t0() - LEEWAY - Duration::from_secs(1);
    assert_eq!(
        verify_session(&f, token.expose(), too_far).unwrap_err(),
        TokenError::NotYetValid
    );
}

#[test]
fn wrong_issuer_is_rejected() {
    let f = fixture();
    let token = session(&f);
    let other = TokenPolicy::new("someone-else", "clawgate-api", LEEWAY);
    let err = st::verify_at(&f.ring, &other, token.expose(), TokenType::Session, t0());
    assert_eq!(err.unwrap_err(), TokenError::WrongIssuer);
}

#[test]
fn wrong_audience_is_rejected() {
    let f = fixture();
    let token = session(&f);
    let other = TokenPolicy::new("clawgate", "another-api", LEEWAY);
    let err = st::verify_at(&f.ring, &other, token.expose(), TokenType::Session, t0());
    assert_eq!(err.unwrap_err(), TokenError::WrongAudience);
}

#[test]
fn refresh_token_is_not_accepted_as_a_session_token() {
    let f = fixture();
    let refresh = mint(&f, TokenDraft::refresh("alice", HOUR));
    assert_eq!(
        verify_session(&f, refresh.expose(), t0()).unwrap_err(),
        TokenError::WrongType
    );
}

#[test]
fn session_token_is_not_accepted_as_a_refresh_token() {
    let f = fixture();
    let token = session(&f);
    let err = st::verify_at(&f.ring, &f.policy, token.expose(), TokenType::Refresh, t0());
    assert_eq!(err.unwrap_err(), TokenError::WrongType);
    let odd = sign_ours(&f, &payload(&json!({ "typ": "Session" })));
    assert_eq!(
        verify_session(&f, &odd, t0()).unwrap_err(),
        TokenError::WrongType
    );
}

#[test]
fn token_signed_by_a_key_outside_the_ring_is_rejected_as_unknown() {
    let f = fixture();
    let stranger = fixture();
    let token = session(&stranger);
    assert_eq!(
        verify_session(&f, token.expose(), t0()).unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn kid_of_another_valid_key_swapped_into_the_footer_fails_the_signature() {
    let f = fixture();
    let token = session(&f);
    let staged = keyring::generate(f.ring.dir(), t0()).unwrap();
    f.ring.reload();
    assert!(f.ring.verifying_key(&staged.kid).is_some());
    let (body, _) = parts(token.expose());
    let swapped = assemble(&body, &b64(kid_footer(&staged.kid).as_bytes()));
    assert_eq!(
        verify_session(&f, &swapped, t0()).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn flipped_bit_in_signature_or_payload_is_rejected() {
    let f = fixture();
    let token = session(&f);
    let (body, footer) = parts(token.expose());
    for index in [0, body.len() / 2, body.len() - 64, body.len() - 1] {
        let mut forged = body.clone();
        forged[index] ^= 0x01;
        let err = verify_session(&f, &assemble(&forged, &footer), t0()).unwrap_err();
        assert_eq!(err, TokenError::BadSignature, "bit flipped at byte {index}");
    }
}

#[test]
fn truncated_token_is_rejected_at_every_length() {
    let f = fixture();
    let token = session(&f);
    let s = token.expose();
    for len in 0..s.len() {
        assert!(
            verify_session(&f, &s[..len], t0()).is_err(),
            "prefix of {len} accepted"
        );
    }
    let (body, footer) = parts(s);
    let shortened = assemble(&body[..body.len() - 3], &footer);
    assert_eq!(
        verify_session(&f, &shortened, t0()).unwrap_err(),
        TokenError::BadSignature
    );
    let tiny = assemble(&body[..40], &footer);
    assert_eq!(
        verify_session(&f, &tiny, t0()).unwrap_err(),
        TokenError::Malformed
    );
}

#[test]
fn empty_token_is_rejected() {
    let f = fixture();
    assert_eq!(
        verify_session(&f, "", t0()).unwrap_err(),
        TokenError::BadHeader
    );
}

#[test]
fn oversized_token_is_rejected_before_anything_else() {
    let f = fixture();
    let huge = format!("v4.public.{}", "A".repeat(100 * 1024));
    assert_eq!(
        verify_session(&f, &huge, t0()).unwrap_err(),
        TokenError::TooLarge
    );
    let just_over = "x".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        verify_session(&f, &just_over, t0()).unwrap_err(),
        TokenError::TooLarge
    );
}

#[test]
fn non_ascii_token_is_rejected() {
    let f = fixture();
    let token = session(&f);
    let (body, footer) = parts(token.expose());
    let in_body = format!("v4.public.é{}.{footer}", b64(&body));
    assert_eq!(
        verify_session(&f, &in_body, t0()).unwrap_err(),
        TokenError::Malformed
    );
    let in_footer = format!("v4.public.{}.{footer}ü", b64(&body));
    assert_eq!(
        verify_session(&f, &in_footer, t0()).unwrap_err(),
        TokenError::Malformed
    );
    assert_eq!(
        verify_session(&f, "v４.public.x.y", t0()).unwrap_err(),
        TokenError::BadHeader
    );
}

#[test]
fn v4_local_header_is_rejected() {
    let f = fixture();
    let token = session(&f);
    let local = token.expose().replacen("v4.public.", "v4.local.", 1);
    assert_eq!(
        verify_session(&f, &local, t0()).unwrap_err(),
        TokenError::BadHeader
    );
}

#[test]
fn v3_v2_and_respelled_headers_are_rejected() {
    let f = fixture();
    let token = session(&f);
    let rest = token.expose().strip_prefix("v4.public.").unwrap();
    for header in [
        "v3.public.",
        "v2.public.",
        "v1.public.",
        "V4.PUBLIC.",
        "v4.Public.",
        " v4.public.",
        "v4.public",
    ] {
        let forged = format!("{header}{rest}");
        assert_eq!(
            verify_session(&f, &forged, t0()).unwrap_err(),
            TokenError::BadHeader,
            "{header}"
        );
    }
}

#[test]
fn footer_longer_than_the_cap_is_rejected_even_when_signed() {
    let f = fixture();
    let kid = f.ring.signer().unwrap().kid().to_owned();
    let footer = format!(r#"{{"kid":"{kid}","pad":"{}"}}"#, "x".repeat(300));
    let token = sign_raw(&f, &payload(&json!({})), Some(&footer));
    assert_eq!(
        verify_session(&f, &token, t0()).unwrap_err(),
        TokenError::BadFooter
    );
}

#[test]
fn footer_with_extra_fields_or_another_shape_is_rejected_even_when_signed() {
    let f = fixture();
    let kid = f.ring.signer().unwrap().kid().to_owned();
    let footers = [
        format!(r#"{{"kid":"{kid}","wpk":"k4.seal.x"}}"#),
        format!(r#"{{ "kid": "{kid}" }}"#),
        format!(r#"{{"kid":"{kid}","kid":"{kid}"}}"#),
        r#"{"kid":"k4.pid.not-a-key-id"}"#.to_owned(),
        kid,
    ];
    for footer in footers {
        let token = sign_raw(&f, &payload(&json!({})), Some(&footer));
        assert_eq!(
            verify_session(&f, &token, t0()).unwrap_err(),
            TokenError::BadFooter,
            "{footer}"
        );
    }
    let without = sign_raw(&f, &payload(&json!({})), None);
    assert_eq!(
        verify_session(&f, &without, t0()).unwrap_err(),
        TokenError::BadFooter
    );
}

#[test]
fn jti_and_sid_are_32_random_bytes_base64url_and_differ_across_mints() {
    let f = fixture();
    let a = session(&f);
    let b = session(&f);
    for id in [
        &a.claims().jti,
        &a.claims().sid,
        &b.claims().jti,
        &b.claims().sid,
    ] {
        assert_eq!(id.len(), 43, "{id}");
        assert_eq!(URL_SAFE_NO_PAD.decode(id).unwrap().len(), 32);
    }
    assert_ne!(a.claims().jti, b.claims().jti);
    assert_ne!(a.claims().sid, b.claims().sid);
    assert_ne!(a.claims().jti, a.claims().sid);
}

#[test]
fn plain_pasetors_verifies_our_tokens_with_the_published_key() {
    let f = fixture();
    // Real time: pasetors checks exp/nbf/iat against its own clock.
    let now = SystemTime::now();
    let minted = st::mint_at(&f.ring, &f.policy, TokenDraft::session("alice", HOUR), now).unwrap();
    let published = &f.ring.public_keys()[0];
    let public = AsymmetricPublicKey::<V4>::try_from(published.public.as_str()).unwrap();
    let mut rules = ClaimsValidationRules::new();
    rules.validate_issuer_with("clawgate");
    rules.validate_audience_with("clawgate-api");
    rules.validate_subject_with("alice");
    let untrusted = UntrustedToken::try_from(minted.expose()).unwrap();
    let footer = kid_footer(&published.kid);
    let mut expected_footer = Footer::new();
    expected_footer.parse_string(&footer).unwrap();
    let trusted =
        pasetors::public::verify(&public, &untrusted, &rules, Some(&expected_footer), None)
            .unwrap();
    assert_eq!(trusted.footer(), footer.as_bytes());
    let claims = trusted.payload_claims().unwrap();
    assert_eq!(
        claims.get_claim("jti").unwrap(),
        minted.claims().jti.as_str()
    );
    assert_eq!(claims.get_claim("typ").unwrap(), "session");
}

#[test]
fn token_signed_by_plain_pasetors_in_our_shape_verifies() {
    let f = fixture();
    let mut claims = PasetoClaims::new().unwrap();
    let now = SystemTime::now();
    claims.issuer("clawgate").unwrap();
    claims.audience("clawgate-api").unwrap();
    claims.subject("bob").unwrap();
    claims.token_identifier(&b64(&[1u8; 32])).unwrap();
    claims.add_additional("typ", "session").unwrap();
    claims.add_additional("sid", b64(&[2u8; 32])).unwrap();
    claims
        .add_additional("auth_time", rfc3339(now - Duration::from_secs(5)))
        .unwrap();
    let kid = f.ring.signer().unwrap().kid().to_owned();
    let mut footer = Footer::new();
    footer.parse_string(&kid_footer(&kid)).unwrap();
    let token = pasetors::public::sign(&signer_secret(&f), &claims, Some(&footer), None).unwrap();
    let v = verify_session(&f, &token, now).unwrap();
    assert_eq!(v.sub(), "bob");
    assert!(v.scopes().is_empty());
}

#[test]
fn malformed_claims_are_rejected_even_when_signed() {
    let f = fixture();
    let cases = [
        json!({ "jti": null }),
        json!({ "sid": "too-short" }),
        json!({ "jti": b64(&[1u8; 31]) }),
        json!({ "sub": "" }),
        json!({ "sub": "alice\nX-Admin: yes" }),
        json!({ "exp": 1_700_003_600 }),
        json!({ "exp": "tomorrow" }),
        json!({ "scope": "read admin" }),
        json!({ "scope": ["has space"] }),
        json!({ "auth_time": null }),
        json!({ "auth_time": rfc3339(t0() + Duration::from_secs(1)) }),
        json!({ "cnf": { "jkt": "x" } }),
        json!({ "cnf": {} }),
        json!({ "cnf": { "kpid": "k4.lid.x" } }),
    ];
    for change in cases {
        let token = sign_ours(&f, &payload(&change));
        let err = verify_session(&f, &token, t0()).unwrap_err();
        assert_eq!(err, TokenError::MalformedClaims, "{change}");
    }
    let not_json = sign_ours(&f, "not json");
    assert_eq!(
        verify_session(&f, &not_json, t0()).unwrap_err(),
        TokenError::MalformedClaims
    );
}

#[test]
fn sender_binding_round_trips_in_cnf() {
    let f = fixture();
    let kid = f.ring.signer().unwrap().kid().to_owned();
    let cnf = Confirmation {
        kpid: Some(kid),
        x5t_s256: Some(b64(&[9u8; 32])),
    };
    let minted = mint(&f, TokenDraft::session("alice", HOUR).with_cnf(cnf.clone()));
    let (body, _) = parts(minted.expose());
    let json = String::from_utf8_lossy(&body[..body.len() - 64]).into_owned();
    assert!(json.contains("\"x5t#S256\""), "{json}");
    assert_eq!(
        verify_session(&f, minted.expose(), t0()).unwrap().cnf(),
        Some(&cnf)
    );
}

#[test]
fn minted_token_and_errors_never_show_the_token() {
    let f = fixture();
    let minted = session(&f);
    let token = minted.expose().to_owned();
    let debug = format!("{minted:?}");
    assert!(
        !debug.contains(&token) && !debug.contains("v4.public"),
        "{debug}"
    );
    let (body, footer) = parts(&token);
    let signature = b64(&body[body.len() - 64..]);
    let err = verify_session(&f, &assemble(&body[..body.len() - 3], &footer), t0()).unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains(&footer) && !text.contains(&signature[..20]),
            "{text}"
        );
    }
}

#[test]
fn error_codes_are_stable_unique_snake_case() {
    let errors = [
        TokenError::TooLarge,
        TokenError::BadHeader,
        TokenError::Malformed,
        TokenError::BadFooter,
        TokenError::UnknownKey,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::WrongType,
        TokenError::MalformedClaims,
        TokenError::NoSigningKey,
        TokenError::InvalidDraft("x"),
        TokenError::Signing,
        TokenError::Random,
    ];
    let codes: std::collections::HashSet<_> = errors.iter().map(TokenError::code).collect();
    assert_eq!(codes.len(), errors.len());
    assert!(
        codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
    assert_eq!(TokenError::Expired.code(), "token_expired");
    assert!(TokenError::BadSignature.is_rejection() && !TokenError::NoSigningKey.is_rejection());
}

#[test]
fn invalid_drafts_are_refused_at_mint_time() {
    let f = fixture();
    let drafts = [
        TokenDraft::session("", HOUR),
        TokenDraft::session("alice", Duration::ZERO),
        TokenDraft::session("alice", Duration::from_millis(999)),
        TokenDraft::session("alice", HOUR).with_sid("not-an-id"),
        TokenDraft::session("alice", HOUR).with_auth_time(t0() + Duration::from_secs(1)),
        TokenDraft::session("alice", HOUR).with_scope(["a b"]),
        TokenDraft::session("alice", HOUR).with_cnf(Confirmation {
            kpid: Some("k4.pid.x".into()),
            x5t_s256: None,
        }),
        TokenDraft::session("alice", Duration::from_secs(u64::MAX)),
        TokenDraft::session("alice", HOUR).with_scope((0..100).map(|i| format!("scope-{i:0>30}"))),
    ];
    for draft in drafts {
        let err = st::mint_at(&f.ring, &f.policy, draft.clone(), t0()).unwrap_err();
        assert!(
            matches!(err, TokenError::InvalidDraft(_)),
            "{draft:?}: {err:?}"
        );
    }
}

#[test]
fn minting_without_a_signing_key_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open(tmp.path()).unwrap();
    let policy = TokenPolicy::new("clawgate", "clawgate-api", LEEWAY);
    let err = st::mint_at(&ring, &policy, TokenDraft::session("alice", HOUR), t0()).unwrap_err();
    assert_eq!(err, TokenError::NoSigningKey);
}

#[test]
fn parse_untrusted_reaches_the_claims_without_a_key() {
    let f = fixture();
    let token = session(&f);
    assert_eq!(st::parse_untrusted(token.expose()), Ok(()));
    let bad_claims = sign_ours(&f, &payload(&json!({ "jti": null })));
    assert_eq!(
        st::parse_untrusted(&bad_claims),
        Err(TokenError::MalformedClaims)
    );
    assert_eq!(
        st::parse_untrusted("v4.local.x.y"),
        Err(TokenError::BadHeader)
    );
}

#[test]
fn policy_comes_from_the_tokens_config() {
    let config = clawgate::config::TokensConfig::default();
    let policy = TokenPolicy::from_config(&config);
    assert_eq!(policy.issuer, config.issuer);
    assert_eq!(policy.audience, config.audience);
    assert_eq!(policy.leeway, config.leeway);
}

#[test]
fn signed_payload_that_is_not_utf8_is_malformed_claims_not_a_bad_signature() {
    let f = fixture();
    let kid = f.ring.signer().unwrap().kid().to_owned();
    let footer = kid_footer(&kid);
    let secret = signer_secret(&f);
    let token = PublicToken::sign(
        &secret,
        b"{\"sub\": \"\xff\xfe\"}",
        Some(footer.as_bytes()),
        None,
    )
    .unwrap();
    assert_eq!(
        verify_session(&f, &token, t0()).unwrap_err(),
        TokenError::MalformedClaims
    );
}

#[test]
fn signed_token_of_an_unknown_type_is_wrong_type() {
    let f = fixture();
    for typ in ["admin", "Session", ""] {
        let token = sign_ours(&f, &payload(&json!({ "typ": typ })));
        assert_eq!(
            verify_session(&f, &token, t0()).unwrap_err(),
            TokenError::WrongType,
            "typ {typ:?}"
        );
    }
}

#[test]
fn empty_body_or_dotted_footer_is_malformed_before_decoding() {
    let f = fixture();
    let (body, footer) = parts(session(&f).expose());
    let empty_body = format!("v4.public..{footer}");
    let dotted_footer = format!("{}.extra", assemble(&body, &footer));
    for token in [empty_body, dotted_footer] {
        assert_eq!(
            verify_session(&f, &token, t0()).unwrap_err(),
            TokenError::Malformed,
            "{token}"
        );
    }
}

#[test]
fn clock_forms_read_the_time_from_the_clock() {
    use clawgate::clock::ManualClock;
    let f = fixture();
    let clock = ManualClock::new(t0());
    let minted = st::mint(
        &f.ring,
        &f.policy,
        TokenDraft::session("alice", HOUR),
        &clock,
    )
    .unwrap();
    assert_eq!(minted.claims().iat, t0());
    let verify = |clock: &ManualClock| {
        st::verify(
            &f.ring,
            &f.policy,
            minted.expose(),
            TokenType::Session,
            clock,
        )
    };
    assert_eq!(verify(&clock).unwrap().sub(), "alice");
    clock.advance(HOUR + LEEWAY + Duration::from_secs(1));
    assert_eq!(verify(&clock).unwrap_err(), TokenError::Expired);
}

mod session_token {
    mod key_ring;
}
