#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::gateway::session_token::{Confirmation, TokenDraft, mint_at};

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn mint(policy: &TokenPolicy, draft: TokenDraft, at: SystemTime) -> String {
    mint_at(fuzz_key_ring(), policy, draft, at)
        .unwrap()
        .expose()
        .to_owned()
}

fn session_token() -> String {
    mint(
        &fuzz_policy(),
        TokenDraft::session("alice", DAY),
        fuzz_now() - HOUR,
    )
}

fn nonce(byte: u8, len: usize) -> String {
    URL_SAFE_NO_PAD.encode(vec![byte; len])
}

fn replay_input(nonce: &str, timestamp: u64) -> Vec<u8> {
    format!("{nonce}\n{timestamp}").into_bytes()
}

#[test]
fn fuzz_key_ring_signs_with_the_published_throwaway_key_and_leaves_no_directory() {
    let ring = fuzz_key_ring();
    let signer = ring.signer().unwrap();
    assert!(signer.kid().starts_with("k4.pid."));
    assert_eq!(ring.keys().len(), 1, "only the fuzz key is loaded");
    assert!(!ring.dir().exists(), "temporary keys dir left behind");
    assert!(paserk_file(FUZZ_SECRET_KEY.as_bytes()).is_ok());
}

#[test]
fn token_parse_reaches_the_success_path_for_a_minted_session_token() {
    let token = session_token();
    assert_eq!(token_parse(token.as_bytes()), Some(Ok(TokenType::Session)));
}

#[test]
fn token_parse_verifies_refresh_tokens_as_refresh_tokens() {
    let draft = TokenDraft::refresh("alice", DAY).with_auth_time(fuzz_now() - DAY);
    let token = mint(&fuzz_policy(), draft, fuzz_now() - HOUR);
    assert_eq!(token_parse(token.as_bytes()), Some(Ok(TokenType::Refresh)));
}

#[test]
fn token_parse_refuses_broken_tokens_with_their_rejection() {
    let token = session_token();
    let local = token.replacen("v4.public.", "v4.local.", 1);
    let truncated = &token[..token.len() / 2];
    let expired = mint(
        &fuzz_policy(),
        TokenDraft::session("bob", HOUR),
        fuzz_now() - DAY,
    );
    let foreign_policy = TokenPolicy::new("someone-else", "clawgate", Duration::ZERO);
    let wrong_issuer = mint(&foreign_policy, TokenDraft::session("bob", DAY), fuzz_now());
    let cases = [
        (local.as_str(), TokenError::BadHeader),
        (truncated, TokenError::BadFooter),
        (expired.as_str(), TokenError::Expired),
        (wrong_issuer.as_str(), TokenError::WrongIssuer),
        ("", TokenError::BadHeader),
    ];
    for (input, expected) in cases {
        assert_eq!(
            token_parse(input.as_bytes()),
            Some(Err(expected)),
            "{input}"
        );
    }
    let oversized = "v4.public.".to_owned() + &"A".repeat(5_000);
    assert_eq!(
        token_parse(oversized.as_bytes()),
        Some(Err(TokenError::TooLarge))
    );
    assert_eq!(token_parse(&[0xff, 0xfe, b'v', b'4']), None);
}

#[test]
fn token_parse_refuses_a_token_of_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let other = KeyRing::open_or_init_at(dir.path(), fuzz_now()).unwrap();
    let token = mint_at(
        &other,
        &fuzz_policy(),
        TokenDraft::session("eve", DAY),
        fuzz_now(),
    )
    .unwrap();
    assert_eq!(
        token_parse(token.expose().as_bytes()),
        Some(Err(TokenError::UnknownKey))
    );
}

#[test]
fn committed_valid_seed_tokens_still_verify() {
    let mut seen = 0;
    for entry in fs::read_dir(corpus_dir("token_parse")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("seed-valid-") {
            let bytes = fs::read(&path).unwrap();
            assert!(
                matches!(token_parse(&bytes), Some(Ok(_))),
                "{name} no longer verifies"
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected the valid seed tokens, found {seen}");
}

#[test]
fn replay_headers_accepts_a_fresh_pair_once() {
    let input = replay_input(&nonce(0xa1, 16), FUZZ_NOW_UNIX);
    assert_eq!(replay_headers(&input), Ok(()));
    assert_eq!(replay_headers(&input), Err(ReplayError::Replayed));
}

#[test]
fn replay_headers_refuses_malformed_and_out_of_window_pairs() {
    let fresh = nonce(0xa2, 16);
    let acceptance = 330; // default window 300 s + token leeway 30 s
    let cases = [
        (fresh.clone().into_bytes(), ReplayError::MissingTimestamp),
        (replay_input("", FUZZ_NOW_UNIX), ReplayError::MissingNonce),
        (
            replay_input(&(fresh.clone() + "=="), FUZZ_NOW_UNIX),
            ReplayError::MalformedNonce,
        ),
        (
            replay_input(&fresh, FUZZ_NOW_UNIX - acceptance - 1),
            ReplayError::Stale,
        ),
        (
            replay_input(&fresh, FUZZ_NOW_UNIX + acceptance + 1),
            ReplayError::Future,
        ),
        (
            format!("{fresh}\n+{FUZZ_NOW_UNIX}").into_bytes(),
            ReplayError::MalformedTimestamp,
        ),
    ];
    for (input, expected) in cases {
        let shown = String::from_utf8_lossy(&input).into_owned();
        assert_eq!(replay_headers(&input), Err(expected), "{shown}");
    }
}

#[test]
fn paserk_file_accepts_only_one_secret_key_line() {
    let key = FUZZ_SECRET_KEY.trim();
    assert!(paserk_file(format!("  {key}\r\n").as_bytes()).is_ok());
    let public = &fuzz_key_ring().public_keys()[0].public;
    for bad in [
        public.clone(),
        format!("{key}\n{key}\n"),
        key[..50].to_owned(),
        key.replacen("k4.", "k3.", 1),
        String::new(),
    ] {
        assert!(paserk_file(bad.as_bytes()).is_err(), "{bad:?} accepted");
    }
    assert!(paserk_file(&[0xff; 8]).is_err());
}

#[test]
fn config_file_parses_the_default_file_and_refuses_bad_ones() {
    let default = crate::config::DEFAULT_CONFIG_TOML.as_bytes();
    assert!(matches!(config_file(default), Some(Ok(_))));
    assert!(matches!(config_file(b""), Some(Ok(_))));
    let bad = "[tls]\nrenew_before = \"3x\"\n";
    let err = config_file(bad.as_bytes()).unwrap().unwrap_err();
    assert!(err.to_string().contains("renew_before"), "{err}");
    assert!(matches!(config_file(b"[nope]\n"), Some(Err(_))));
    assert!(config_file(&[b'[', 0xff, b']']).is_none());
}

#[test]
fn bearer_token_finds_header_and_subprotocol_tokens_and_never_forwards_them() {
    let token = session_token();
    let header = format!("authorization: Bearer {token}\n");
    assert!(bearer_token(header.as_bytes()));
    let ws = format!(
        "upgrade: websocket\nconnection: upgrade\nsec-websocket-protocol: chat, clawgate.bearer, {token}\n"
    );
    assert!(bearer_token(ws.as_bytes()));
    assert!(!bearer_token(b"authorization: Basic Zm9vOmJhcg==\n"));
    assert!(!bearer_token(b""));
    for (_, seed) in bearer_seeds() {
        bearer_token(&seed);
    }
}

#[test]
fn proof_header_accepts_a_seed_proof_once_then_refuses_the_replay() {
    let proof = fuzz_proof("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAo");
    assert_eq!(proof_header(proof.as_bytes()), Some(Ok(())));
    assert_eq!(
        proof_header(proof.as_bytes()),
        Some(Err(BindingError::ProofReplayed))
    );
    assert_eq!(
        proof_header(b"v4.public.AAAA"),
        Some(Err(BindingError::ProofMalformed))
    );
    assert_eq!(proof_header(b"a\r\nb"), None);
}

#[test]
fn request_headers_drops_every_spelling_of_the_gateway_headers() {
    for (_, seed) in request_header_seeds() {
        request_headers(&seed);
    }
    // All flags, every look-alike at once: the invariant inside holds.
    let mut input = vec![0x1f];
    input.extend_from_slice(LOOKALIKE_BLOCK.as_bytes());
    assert!(request_headers(&input));
    assert!(!request_headers(b""));
}

/// Regenerates the committed seed corpus in `fuzz/corpus/<target>/seed-*`:
/// `cargo test --lib fuzzing -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let seeds = [
        ("token_parse", token_seeds()),
        ("replay_headers", replay_seeds()),
        ("paserk_file", paserk_seeds()),
        ("config_file", config_seeds()),
        ("bearer_token", bearer_seeds()),
        ("proof_header", proof_seeds()),
        ("request_headers", request_header_seeds()),
    ];
    for (target, files) in seeds {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}

fn token_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let policy = fuzz_policy();
    let (now, kid) = (
        fuzz_now(),
        fuzz_key_ring().signer().unwrap().kid().to_owned(),
    );
    let session = session_token();
    let cnf = Confirmation {
        kpid: Some(kid),
        x5t_s256: Some(URL_SAFE_NO_PAD.encode([7u8; 32])),
    };
    let scoped = TokenDraft::session("carol@example.com", DAY)
        .with_scope(["admin", "read:logs"])
        .with_cnf(cnf);
    let refresh = TokenDraft::refresh("alice", 7 * DAY).with_auth_time(now - DAY);
    let foreign = TokenPolicy::new("someone-else", "other", Duration::ZERO);
    let (body, footer) = session.rsplit_once('.').unwrap();
    let mut flipped = body.to_owned().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let dir = tempfile::tempdir().unwrap();
    let other = KeyRing::open_or_init_at(dir.path(), now).unwrap();
    let unknown = mint_at(&other, &policy, TokenDraft::session("eve", DAY), now).unwrap();
    let spaced_footer = URL_SAFE_NO_PAD.encode(
        String::from_utf8(URL_SAFE_NO_PAD.decode(footer).unwrap())
            .unwrap()
            .replace(':', ": "),
    );
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        ("valid-session", text(&session)),
        (
            "valid-session-scoped",
            text(&mint(&policy, scoped, now - HOUR)),
        ),
        ("valid-refresh", text(&mint(&policy, refresh, now - HOUR))),
        (
            "expired",
            text(&mint(&policy, TokenDraft::session("bob", HOUR), now - DAY)),
        ),
        (
            "not-yet-valid",
            text(&mint(&policy, TokenDraft::session("bob", DAY), now + HOUR)),
        ),
        (
            "wrong-issuer",
            text(&mint(&foreign, TokenDraft::session("bob", DAY), now)),
        ),
        ("unknown-key", text(unknown.expose())),
        (
            "bad-signature",
            [flipped, b".".to_vec(), text(footer)].concat(),
        ),
        (
            "v4-local",
            text(&session.replacen("v4.public.", "v4.local.", 1)),
        ),
        ("v2-public", text(&session.replacen("v4.", "v2.", 1))),
        ("v3-public", text(&session.replacen("v4.", "v3.", 1))),
        ("bearer-prefixed", text(&format!("Bearer {session}"))),
        ("truncated", text(&session[..session.len() / 2])),
        ("no-footer", text(body)),
        ("spaced-footer", text(&format!("{body}.{spaced_footer}"))),
        (
            "too-large",
            text(&format!("{session}{}", "A".repeat(4_096))),
        ),
        ("empty", Vec::new()),
    ]
}

fn replay_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let now = FUZZ_NOW_UNIX;
    let n16 = nonce(0x5c, 16);
    vec![
        ("valid-16-bytes", replay_input(&n16, now)),
        ("valid-64-bytes", replay_input(&nonce(0x3e, 64), now)),
        ("edge-oldest", replay_input(&nonce(0x11, 16), now - 330)),
        ("edge-newest", replay_input(&nonce(0x12, 16), now + 330)),
        ("stale", replay_input(&n16, now - 331)),
        ("future", replay_input(&n16, now + 331)),
        ("padded-nonce", replay_input(&(n16.clone() + "=="), now)),
        ("trailing-bits", replay_input("AAAAAAAAAAAAAAAAAAAAAB", now)),
        ("short-nonce", replay_input(&n16[..21], now)),
        ("no-timestamp", n16.clone().into_bytes()),
        ("empty-nonce", format!("\n{now}").into_bytes()),
        ("signed-timestamp", format!("{n16}\n+{now}").into_bytes()),
        ("long-timestamp", format!("{n16}\n{now}000").into_bytes()),
        ("empty", Vec::new()),
    ]
}

fn paserk_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let key = FUZZ_SECRET_KEY.trim();
    let public = fuzz_key_ring().public_keys()[0].public.clone();
    vec![
        ("throwaway-secret", FUZZ_SECRET_KEY.as_bytes().to_vec()),
        ("crlf", format!("{key}\r\n").into_bytes()),
        ("surrounding-space", format!("  {key}  \n\n").into_bytes()),
        ("public-key", format!("{public}\n").into_bytes()),
        ("two-lines", format!("{key}\n{key}\n").into_bytes()),
        ("truncated", key.as_bytes()[..50].to_vec()),
        ("k3-secret", key.replacen("k4.", "k3.", 1).into_bytes()),
        ("empty", Vec::new()),
    ]
}

fn config_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        ("default", text(crate::config::DEFAULT_CONFIG_TOML)),
        ("empty", Vec::new()),
        (
            "tokens",
            text("[tokens]\nissuer = \"example\"\nsession_ttl = \"1h\"\nleeway = \"5s\"\n"),
        ),
        (
            "users",
            text(
                "[auth]\npairing = false\n[[auth.users]]\nname = \"alice\"\n\
                 password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\n\
                 scopes = [\"admin\"]\n",
            ),
        ),
        (
            "upstream",
            text(
                "[upstream]\nurl = \"http://127.0.0.1:3000\"\npublic_paths = [\"/health\"]\n\
                 response_timeout = \"2m\"\n",
            ),
        ),
        (
            "mtls",
            text("[tls]\nclient_auth = \"required\"\nclient_cert_fingerprints = [\"00\"]\n"),
        ),
        (
            "replay",
            text(
                "[replay]\nenabled = true\nwindow = \"60s\"\nmethods = [\"POST\"]\nmax_nonces = 10\n",
            ),
        ),
        ("bad-duration", text("[tls]\nrenew_before = \"3x\"\n")),
        (
            "unknown-key",
            text("[server]\nlisten = \"127.0.0.1:8443\"\nlisen = 1\n"),
        ),
        ("bad-listen", text("[server]\nlisten = \"localhost\"\n")),
        (
            "inline-tables",
            text("server = { max_connections = 0 }\nhsts = { max_age = -1 }\n"),
        ),
    ]
}

/// Look-alikes of every gateway-owned and trusted header, in a header block.
const LOOKALIKE_BLOCK: &str = "host: gw.example\n\
    x_clawgate_subject: owner\nx-clawgate_scopes: admin\nX_CLAWGATE_SESSION: s\n\
    x-clawgate-subject: forged\nx_forwarded_for: 203.0.113.9\nx_forwarded-host: evil\n\
    x-forwarded-for: 203.0.113.9\nx_real_ip: 203.0.113.9\nforwarded: for=1.2.3.4\n\
    x-real-ip: 1.2.3.4\nx_custom: 1\nauthorization: Bearer v4.public.x\n";

/// A proof made with the fuzz key for the proof target's fixed request.
fn fuzz_proof(jti: &str) -> String {
    use crate::gateway::http::fuzzing::{
        FUZZ_PROOF_METHOD, FUZZ_PROOF_TOKEN, FUZZ_PROOF_URI, fuzz_client_key,
    };
    fuzz_client_key()
        .sign_proof_with_jti_at(
            FUZZ_PROOF_METHOD,
            FUZZ_PROOF_URI,
            FUZZ_PROOF_TOKEN,
            jti,
            fuzz_now(),
        )
        .unwrap()
}

fn bearer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let token = session_token();
    let text = |s: String| s.into_bytes();
    vec![
        (
            "authorization",
            text(format!("authorization: Bearer {token}\n")),
        ),
        (
            "lowercase-scheme",
            text(format!("authorization: bearer   {token}  \n")),
        ),
        (
            "two-authorization",
            text(format!(
                "authorization: Bearer a\nauthorization: Bearer {token}\n"
            )),
        ),
        ("basic", b"authorization: Basic Zm9vOmJhcg==\n".to_vec()),
        (
            "websocket",
            text(format!(
                "upgrade: websocket\nconnection: Upgrade\nsec-websocket-protocol: chat, clawgate.bearer, {token}\n"
            )),
        ),
        (
            "websocket-split",
            text(format!(
                "upgrade: WebSocket\nsec-websocket-protocol: CLAWGATE.BEARER\nsec-websocket-protocol: {token}, chat\n"
            )),
        ),
        (
            "websocket-marker-twice",
            b"upgrade: websocket\nsec-websocket-protocol: clawgate.bearer, clawgate.bearer, tok\n"
                .to_vec(),
        ),
        (
            "websocket-hop-by-hop",
            text(format!(
                "upgrade: websocket\nconnection: sec-websocket-protocol\nsec-websocket-protocol: clawgate.bearer,{token}\n"
            )),
        ),
        ("empty", Vec::new()),
    ]
}

fn proof_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let valid = fuzz_proof("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let other_method = crate::gateway::http::fuzzing::fuzz_client_key()
        .sign_proof_with_jti_at(
            "GET",
            "/v1/items?limit=5",
            "v4.public.fuzz-session-token",
            "BBBBBBBBBBBBBBBBBBBBBA",
            fuzz_now(),
        )
        .unwrap();
    let stale = crate::gateway::http::fuzzing::fuzz_client_key()
        .sign_proof_with_jti_at(
            "POST",
            "/v1/items?limit=5",
            "v4.public.fuzz-session-token",
            "CCCCCCCCCCCCCCCCCCCCCA",
            fuzz_now() - DAY,
        )
        .unwrap();
    let mut flipped = valid.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    vec![
        ("valid", valid.clone().into_bytes()),
        ("valid-second-nonce", fuzz_proof("DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDA").into_bytes()),
        ("other-method", other_method.into_bytes()),
        ("stale", stale.into_bytes()),
        ("bad-signature", flipped),
        ("footer", format!("{valid}.e30").into_bytes()),
        ("v4-local", valid.replacen("v4.public.", "v4.local.", 1).into_bytes()),
        ("truncated", valid.as_bytes()[..valid.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ]
}

fn request_header_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let with_flags = |flags: u8, block: &str| {
        let mut input = vec![flags];
        input.extend_from_slice(block.as_bytes());
        input
    };
    vec![
        ("lookalikes-public", with_flags(0, LOOKALIKE_BLOCK)),
        (
            "lookalikes-authenticated",
            with_flags(0x02, LOOKALIKE_BLOCK),
        ),
        (
            "lookalikes-trusted-proxy",
            with_flags(0x03, LOOKALIKE_BLOCK),
        ),
        (
            "lookalikes-underscores-allowed",
            with_flags(0x12, LOOKALIKE_BLOCK),
        ),
        ("lookalikes-all-flags", with_flags(0x1f, LOOKALIKE_BLOCK)),
        (
            "hop-by-hop",
            with_flags(
                0x02,
                "host: a\nconnection: x-private, close\nx-private: 1\nte: trailers\n\
                 transfer-encoding: chunked\nkeep-alive: 5\nexpect: 100-continue\n\
                 proxy-authorization: Basic x\n",
            ),
        ),
        (
            "websocket",
            with_flags(
                0x0a,
                "host: a\nupgrade: websocket\nconnection: upgrade\n\
                 sec-websocket-protocol: clawgate.bearer, v4.public.x, chat\n",
            ),
        ),
        ("empty", vec![0]),
    ]
}
