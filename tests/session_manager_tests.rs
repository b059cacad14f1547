//! The session manager at library level, with real keys, a real revocation
//! journal in a temporary directory, and a manual clock: issuing (pairing,
//! login, CLI), refresh rotation, reuse detection and the grace window, the
//! idle and absolute limits, the per-user limit, logout and revocation,
//! restarts, a failing store, binding, start-up configuration errors, the
//! stable error codes, and secrets kept out of Debug output and logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::logs::LogBuffer;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::clock::{Clock, ManualClock};
use clawgate::config::{AuthConfig, BindingPolicy, StateConfig, TokensConfig, UserConfig};
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use clawgate::gateway::session_manager::revocation_store::{RevocationStore, StoreHealth};
use clawgate::gateway::session_manager::{
    AdminRevoke, IssueMethod, OpenError, Session, SessionError, SessionManager, TokenPair,
};
use clawgate::gateway::session_token::keyring::KeyRing;
use clawgate::gateway::session_token::{Confirmation, TokenError};
use futures_util::FutureExt;
use tempfile::TempDir;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
const ALICE_PW: &str = "correct horse battery staple";
const BOB_PW: &str = "hunter2-but-longer";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn client() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn user(name: &str, password: &str, scopes: &[&str]) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password_hash: insecure_hash_password_for_tests(password).unwrap(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

struct Fx {
    tmp: TempDir,
    clock: Arc<ManualClock>,
    keyring: Arc<KeyRing>,
    store: Arc<RevocationStore>,
    sm: SessionManager,
    tokens: TokensConfig,
    auth: AuthConfig,
}

impl Fx {
    fn new() -> Self {
        Self::with(|_, _| {})
    }

    fn with(tweak: impl FnOnce(&mut TokensConfig, &mut AuthConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let mut tokens = TokensConfig {
            keys_dir: tmp.path().join("keys"),
            ..TokensConfig::default()
        };
        let mut auth = AuthConfig {
            users: vec![
                user("alice", ALICE_PW, &["read"]),
                user("bob", BOB_PW, &["read", "write"]),
            ],
            ..AuthConfig::default()
        };
        tweak(&mut tokens, &mut auth);
        let state = tmp.path().join("state");
        let (keyring, store, sm) = open(&state, &tokens, &auth, &clock);
        Self {
            tmp,
            clock,
            keyring,
            store,
            sm,
            tokens,
            auth,
        }
    }

    /// A process restart: the manager and the store are dropped, the
    /// store is re-opened on the same state directory.
    fn restart(self) -> Self {
        let Self {
            tmp,
            clock,
            keyring,
            store,
            sm,
            tokens,
            auth,
        } = self;
        drop(sm);
        drop(store);
        drop(keyring);
        let (keyring, store, sm) = open(&tmp.path().join("state"), &tokens, &auth, &clock);
        Self {
            tmp,
            clock,
            keyring,
            store,
            sm,
            tokens,
            auth,
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn issue(&self, sub: &str, scopes: &[&str]) -> TokenPair {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.sm.issue(sub, scopes, None, IssueMethod::Cli).unwrap()
    }

    fn login(&self, name: &str, password: &str) -> Result<TokenPair, SessionError> {
        self.sm.login(name, password, client(), None)
    }

    fn auth(&self, pair: &TokenPair) -> Result<Session, SessionError> {
        self.sm.authenticate(pair.session_token())
    }

    fn refresh(&self, pair: &TokenPair) -> Result<TokenPair, SessionError> {
        self.sm.refresh(pair.refresh_token().unwrap())
    }

    fn admin(&self) -> Session {
        let pair = self.issue("root", &["admin"]);
        self.auth(&pair).unwrap()
    }
}

/// Opens the manager as the gateway does: keys from `tokens.keys_dir`,
/// revocations and the session index from `state`.
fn open(
    state: &Path,
    tokens: &TokensConfig,
    auth: &AuthConfig,
    clock: &Arc<ManualClock>,
) -> (Arc<KeyRing>, Arc<RevocationStore>, SessionManager) {
    let state = StateConfig {
        dir: state.to_path_buf(),
    };
    let sm = SessionManager::open(tokens, auth, &state, clock.clone()).unwrap();
    (Arc::clone(sm.keyring()), Arc::clone(sm.store()), sm)
}

fn x5t(byte: u8) -> Confirmation {
    Confirmation {
        kpid: None,
        x5t_s256: Some(URL_SAFE_NO_PAD.encode([byte; 32])),
    }
}

// ---------------------------------------------------------------- issuing

#[test]
fn issued_session_token_authenticates_with_its_claims() {
    let fx = Fx::new();
    let pair = fx.issue("carol", &["read"]);
    let session = fx.auth(&pair).unwrap();
    assert_eq!(session.subject(), "carol");
    assert_eq!(session.scopes(), ["read"]);
    assert!(session.has_scope("read") && !session.has_scope("admin"));
    assert_eq!(session.session_id(), pair.session_claims().sid);
    assert_eq!(session.jti(), pair.session_claims().jti);
    assert_eq!(session.expires_at(), t0() + 24 * HOUR);
    assert_eq!(session.claims().auth_time(), t0());
    let refresh = pair.refresh_claims().unwrap();
    assert_eq!(refresh.sid, pair.session_claims().sid, "one family");
    assert_eq!(refresh.exp, t0() + 72 * HOUR, "refresh lives idle_timeout");
}

#[test]
fn refresh_token_is_not_a_session_token_and_vice_versa() {
    let fx = Fx::new();
    let pair = fx.issue("carol", &[]);
    let err = fx
        .sm
        .authenticate(pair.refresh_token().unwrap())
        .unwrap_err();
    assert_eq!(err, SessionError::InvalidToken(TokenError::WrongType));
    let err = fx.sm.refresh(pair.session_token()).unwrap_err();
    assert_eq!(err, SessionError::InvalidToken(TokenError::WrongType));
    assert_eq!(err.code(), "invalid_token");
}

#[test]
fn token_response_has_the_documented_shape() {
    let fx = Fx::new();
    let pair = fx.issue("carol", &[]);
    let body = pair.response_json(t0() + MINUTE);
    assert_eq!(body["session_token"], pair.session_token());
    assert_eq!(body["refresh_token"], pair.refresh_token().unwrap());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 24 * 3_600 - 60);
    assert_eq!(body["expires_at"], "2023-11-15T22:13:20Z");
    assert_eq!(body.as_object().unwrap().len(), 5);
}

#[test]
fn without_refresh_no_refresh_token_is_issued_or_accepted() {
    let fx = Fx::with(|t, _| t.refresh = false);
    let pair = fx.issue("carol", &[]);
    assert!(pair.refresh_token().is_none());
    assert!(pair.response_json(t0()).get("refresh_token").is_none());
    let err = fx.sm.refresh("v4.public.anything").unwrap_err();
    assert_eq!(err.code(), "refresh_disabled");
    let info = fx.sm.info(&fx.auth(&pair).unwrap());
    assert_eq!(info.idle_expires_at, None);
}

#[test]
fn login_with_the_right_password_gets_the_configured_scopes() {
    let fx = Fx::new();
    let pair = fx.login("bob", BOB_PW).unwrap();
    let session = fx.auth(&pair).unwrap();
    assert_eq!(session.subject(), "bob");
    assert_eq!(session.scopes(), ["read", "write"]);
}

#[test]
fn unknown_user_and_wrong_password_fail_alike() {
    let fx = Fx::new();
    let verifier = fx.sm.password_verifier();
    let before = verifier.argon2_runs();
    let unknown = fx.login("mallory", ALICE_PW).unwrap_err();
    let after_unknown = verifier.argon2_runs();
    let wrong = fx.login("alice", "not the password").unwrap_err();
    let after_wrong = verifier.argon2_runs();
    assert_eq!(unknown, SessionError::InvalidCredentials);
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.to_string(), wrong.to_string());
    assert_eq!(wrong.code(), "invalid_credentials");
    assert_eq!(
        after_unknown - before,
        1,
        "one argon2 run for an unknown user"
    );
    assert_eq!(
        after_wrong - after_unknown,
        1,
        "one argon2 run for a wrong password"
    );
}

#[test]
fn login_attempts_are_rate_limited_per_user_before_argon2() {
    let fx = Fx::with(|_, a| a.login_attempts_per_user_per_minute = 3);
    for _ in 0..3 {
        assert_eq!(
            fx.login("alice", "wrong").unwrap_err().code(),
            "invalid_credentials"
        );
    }
    let runs = fx.sm.password_verifier().argon2_runs();
    let err = fx.login("alice", ALICE_PW).unwrap_err();
    assert_eq!(err.code(), "rate_limited");
    assert_eq!(err.retry_after(), Some(MINUTE));
    assert_eq!(
        fx.sm.password_verifier().argon2_runs(),
        runs,
        "no argon2 past the limit"
    );
    fx.login("bob", BOB_PW)
        .expect("another user has its own budget");
    fx.advance(MINUTE);
    fx.login("alice", ALICE_PW).expect("a new window");
}

#[test]
fn pairing_code_gives_owner_admin_once() {
    let fx = Fx::new();
    let code = fx.sm.pairing_code().unwrap().reveal().to_owned();
    let pair = fx.sm.pair(&code, client(), None).unwrap();
    let session = fx.auth(&pair).unwrap();
    assert_eq!(session.subject(), "owner");
    assert_eq!(session.scopes(), ["admin"]);
    let again = fx.sm.pair(&code, client(), None).unwrap_err();
    assert_eq!(again, SessionError::PairingUsed);
    assert_eq!(again.code(), "pairing_used");
}

#[test]
fn wrong_pairing_codes_lock_pairing_out() {
    let fx = Fx::with(|_, a| a.pairing_max_attempts = 3);
    let code = fx.sm.pairing_code().unwrap().reveal().to_owned();
    for _ in 0..2 {
        let err = fx.sm.pair("AAAA-AAAA-AAAA", client(), None).unwrap_err();
        assert_eq!(err.code(), "pairing_invalid");
    }
    let err = fx.sm.pair("AAAA-AAAA-AAAA", client(), None).unwrap_err();
    assert_eq!(err.code(), "pairing_locked");
    assert_eq!(err.retry_after(), Some(15 * MINUTE));
    let err = fx.sm.pair(&code, client(), None).unwrap_err();
    assert_eq!(
        err.code(),
        "pairing_locked",
        "even the right code while locked"
    );
    fx.advance(15 * MINUTE);
    fx.sm
        .pair(&code, client(), None)
        .expect("the lockout ended");
}

#[test]
fn pairing_can_be_disabled() {
    let fx = Fx::with(|_, a| a.pairing = false);
    assert!(fx.sm.pairing_code().is_none());
    let err = fx.sm.pair("AAAA-AAAA-AAAA", client(), None).unwrap_err();
    assert_eq!(err.code(), "pairing_disabled");
}

#[test]
fn unusable_user_hash_is_a_startup_error_naming_the_user() {
    let auth = AuthConfig {
        users: vec![UserConfig {
            name: "dave".to_owned(),
            password_hash: "$argon2id$v=19$garbage-secret-ish".to_owned(),
            scopes: vec![],
        }],
        ..AuthConfig::default()
    };
    let err = try_open(&TokensConfig::default(), &auth).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, OpenError::Config(_)), "{err:?}");
    assert!(message.contains("[auth.users] password_hash"), "{message}");
    assert!(message.contains("\"dave\""), "{message}");
    assert!(!message.contains("garbage-secret-ish"), "{message}");
}

/// Opens a manager on fresh directories; `tokens.keys_dir` is replaced.
/// The rules are the configuration's (`TokensConfig::validate`,
/// `AuthConfig::validate`), which `SessionManager::open` runs first.
fn try_open(tokens: &TokensConfig, auth: &AuthConfig) -> Result<SessionManager, OpenError> {
    let tmp = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    let tokens = TokensConfig {
        keys_dir: tmp.path().join("keys"),
        ..tokens.clone()
    };
    let state = StateConfig {
        dir: tmp.path().join("state"),
    };
    let opened = SessionManager::open(&tokens, auth, &state, clock);
    if opened.is_err() {
        assert!(
            !tmp.path().join("keys").exists(),
            "a refused configuration creates nothing"
        );
    }
    opened
}

#[test]
fn unusable_token_lifetimes_are_startup_errors_naming_the_key() {
    let auth = AuthConfig::default();
    type Tweak = fn(&mut TokensConfig);
    let cases: [(Tweak, &str); 5] = [
        (
            |t| t.session_ttl = Duration::from_millis(999),
            "[tokens] session_ttl: must be at least 1s",
        ),
        (
            |t| t.idle_timeout = Duration::ZERO,
            "[tokens] idle_timeout: must be at least 1s",
        ),
        (
            |t| {
                t.session_ttl = 2 * HOUR;
                t.absolute_timeout = HOUR;
            },
            "[tokens] absolute_timeout: must be at least session_ttl",
        ),
        (
            |t| t.max_sessions_per_user = 0,
            "[tokens] max_sessions_per_user: must be at least 1",
        ),
        (
            |t| t.absolute_timeout = Duration::from_secs(101 * 365 * 86_400),
            "[tokens] absolute_timeout: must be at most 100 years",
        ),
    ];
    for (tweak, message) in cases {
        let mut tokens = TokensConfig::default();
        tweak(&mut tokens);
        let err = try_open(&tokens, &auth).unwrap_err();
        assert!(matches!(err, OpenError::Config(_)), "{err:?}");
        assert_eq!(err.to_string(), message);
        // The same rule, from the same owner, refuses the file.
        assert_eq!(tokens.validate().unwrap_err().to_string(), message);
    }
    // The 1 s floor on the idle limit only matters when refresh tokens are
    // issued; 0 is refused either way (as `config check` always did).
    let tokens = TokensConfig {
        refresh: false,
        idle_timeout: Duration::from_millis(999),
        ..TokensConfig::default()
    };
    try_open(&tokens, &auth).expect("no refresh, no idle floor");
    let tokens = TokensConfig {
        refresh: false,
        idle_timeout: Duration::ZERO,
        ..TokensConfig::default()
    };
    let err = try_open(&tokens, &auth).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[tokens] idle_timeout: must be at least 1s"
    );
}

#[test]
fn user_names_and_scopes_that_cannot_go_into_a_token_are_startup_errors() {
    let long = "x".repeat(257);
    let cases = [
        (user("", "pw", &[]), "name: \"\""),
        (user("eve\nadmin", "pw", &[]), "name: \"eve\\nadmin\""),
        (user(&long, "pw", &[]), "must be 1-256 bytes"),
        (
            user("erin", "pw", &["read", "two words"]),
            "scope \"two words\"",
        ),
        (user("erin", "pw", &["quote\""]), "scope \"quote\\\"\""),
        (user("erin", "pw", &[""]), "scope \"\""),
    ];
    for (bad, fragment) in cases {
        let auth = AuthConfig {
            users: vec![user("alice", ALICE_PW, &["read"]), bad],
            ..AuthConfig::default()
        };
        let err = try_open(&TokensConfig::default(), &auth).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, OpenError::Config(_)), "{err:?}");
        assert!(message.starts_with("[auth.users] "), "{message}");
        assert!(message.contains(fragment), "{fragment} not in {message}");
    }
    let edge = AuthConfig {
        users: vec![user(&"y".repeat(256), "pw", &["a:b/c~!"])],
        ..AuthConfig::default()
    };
    try_open(&TokensConfig::default(), &edge).expect("256 bytes and visible ASCII are fine");
}

#[test]
fn issuing_without_a_signing_key_is_the_servers_fault_and_spends_no_pairing_code() {
    let fx = Fx::new();
    let empty = fx.tmp.path().join("empty-keys");
    std::fs::create_dir(&empty).unwrap();
    let keyring = Arc::new(KeyRing::open(&empty).unwrap());
    let clock: Arc<dyn Clock> = fx.clock.clone();
    let sm = SessionManager::from_parts(
        &fx.tokens,
        &fx.auth,
        Arc::clone(&keyring),
        Arc::clone(&fx.store),
        clock,
    )
    .unwrap();
    let err = sm
        .issue("carol", vec![], None, IssueMethod::Cli)
        .unwrap_err();
    assert_eq!(err, SessionError::Mint(TokenError::NoSigningKey));
    assert_eq!(err.code(), "mint_failed");
    let code = sm.pairing_code().unwrap().reveal().to_owned();
    let err = sm.pair(&code, client(), None).unwrap_err();
    assert_eq!(err, SessionError::Mint(TokenError::NoSigningKey));
    // Once a key is activated, the same code still pairs.
    clawgate::gateway::session_token::keyring::rotate(&empty, t0()).unwrap();
    keyring.reload();
    let pair = sm.pair(&code, client(), None).unwrap();
    assert_eq!(
        sm.authenticate(pair.session_token()).unwrap().subject(),
        "owner"
    );
}

#[test]
fn an_issue_that_cannot_go_into_a_token_is_the_callers_error() {
    let fx = Fx::new();
    let issue = |sub: &str, scopes: &[&str], ttl: Option<Duration>| {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        fx.sm.issue(sub, scopes, ttl, IssueMethod::Cli)
    };
    let cases = [
        (
            issue("", &[], None),
            "sub must be 1-256 characters, no control characters",
        ),
        (
            issue("carol", &["two words"], None),
            "each scope must be 1-128 visible ASCII characters, no '\"' or '\\'",
        ),
        (
            issue("carol", &[], Some(Duration::ZERO)),
            "ttl must be at least 1s",
        ),
        (
            issue("carol", &[], Some(Duration::from_millis(500))),
            "ttl must be at least 1s",
        ),
    ];
    for (result, reason) in cases {
        let err = result.unwrap_err();
        assert_eq!(err, SessionError::InvalidRequest(reason));
        assert_eq!(err.code(), "invalid_request");
    }
    // A TTL past the absolute limit is clamped to it, not refused.
    let pair = issue("carol", &[], Some(365 * 24 * HOUR)).unwrap();
    assert_eq!(pair.session_claims().exp, t0() + 30 * 24 * HOUR);
}

#[test]
fn an_overlong_user_name_is_refused_like_a_wrong_password_without_argon2() {
    let fx = Fx::with(|_, a| a.login_attempts_per_user_per_minute = 1);
    let long = "a".repeat(257);
    let runs = fx.sm.password_verifier().argon2_runs();
    for _ in 0..3 {
        let err = fx.login(&long, ALICE_PW).unwrap_err();
        assert_eq!(err, SessionError::InvalidCredentials, "never rate_limited");
    }
    assert_eq!(fx.sm.password_verifier().argon2_runs(), runs);
}

#[test]
fn error_codes_are_stable_and_distinct() {
    let wait = Duration::from_secs(7);
    let cases = [
        (
            SessionError::InvalidToken(TokenError::Expired),
            "invalid_token",
        ),
        (SessionError::TokenRevoked, "token_revoked"),
        (SessionError::RefreshDisabled, "refresh_disabled"),
        (SessionError::RefreshReused, "refresh_reused"),
        (SessionError::SessionExpired, "session_expired"),
        (SessionError::PairingDisabled, "pairing_disabled"),
        (SessionError::PairingInvalid, "pairing_invalid"),
        (SessionError::PairingUsed, "pairing_used"),
        (
            SessionError::PairingLocked { retry_after: wait },
            "pairing_locked",
        ),
        (
            SessionError::RateLimited { retry_after: wait },
            "rate_limited",
        ),
        (SessionError::InvalidCredentials, "invalid_credentials"),
        (SessionError::BindingRequired, "binding_required"),
        (
            SessionError::Binding(
                clawgate::gateway::session_manager::binding::BindingError::ProofStale,
            ),
            "proof_stale",
        ),
        (SessionError::Forbidden, "insufficient_scope"),
        (SessionError::NotFound, "session_not_found"),
        (SessionError::InvalidRequest("x"), "invalid_request"),
        (SessionError::Mint(TokenError::Signing), "mint_failed"),
    ];
    let mut codes = std::collections::HashSet::new();
    for (error, code) in &cases {
        assert_eq!(error.code(), *code, "{error:?}");
        assert!(codes.insert(*code), "{code} used twice");
        let expected = matches!(
            error,
            SessionError::PairingLocked { .. } | SessionError::RateLimited { .. }
        )
        .then_some(wait);
        assert_eq!(error.retry_after(), expected, "{error:?}");
    }
    assert_eq!(
        SessionError::RateLimited { retry_after: wait }.to_string(),
        "too many login attempts; retry in 7 s"
    );
}

#[test]
fn issue_methods_have_stable_labels() {
    let labels = [
        IssueMethod::Pair,
        IssueMethod::Login,
        IssueMethod::Refresh,
        IssueMethod::Cli,
    ]
    .map(IssueMethod::as_str);
    assert_eq!(labels, ["pair", "login", "refresh", "cli"]);
}

// ---------------------------------------------------------------- refresh

#[test]
fn refresh_rotates_tokens_within_the_same_session() {
    let fx = Fx::new();
    let first = fx.login("alice", ALICE_PW).unwrap();
    fx.advance(HOUR);
    let second = fx.refresh(&first).unwrap();
    let (a, b) = (first.session_claims(), second.session_claims());
    assert_ne!(a.jti, b.jti);
    assert_ne!(
        first.refresh_claims().unwrap().jti,
        second.refresh_claims().unwrap().jti
    );
    assert_eq!(a.sid, b.sid);
    assert_eq!(b.auth_time, t0());
    assert_eq!(b.iat, t0() + HOUR);
    assert_eq!(b.scope, ["read"]);
    let session = fx.auth(&second).unwrap();
    assert_eq!(session.claims().auth_time(), t0());
    // The old refresh token is spent, durably, by jti.
    let old = first.refresh_claims().unwrap();
    let iat = old.iat.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let now = fx.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(fx.store.is_revoked_at(&old.jti, "-", "-", iat, now));
    // The old session token lives on until its own expiry.
    fx.auth(&first)
        .expect("rotation does not revoke the old session token");
}

#[test]
fn refresh_token_reuse_after_grace_revokes_the_family() {
    let fx = Fx::new();
    let first = fx.login("alice", ALICE_PW).unwrap();
    let second = fx.refresh(&first).unwrap();
    fx.advance(Duration::from_secs(11));
    let err = fx.refresh(&first).unwrap_err();
    assert_eq!(err, SessionError::RefreshReused);
    assert_eq!(err.code(), "refresh_reused");
    assert_eq!(fx.auth(&first).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(fx.auth(&second).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(fx.refresh(&second).unwrap_err(), SessionError::TokenRevoked);
    let fresh = fx.login("alice", ALICE_PW).unwrap();
    fx.auth(&fresh).expect("a new login starts a new family");
}

#[test]
fn refresh_token_reuse_within_grace_returns_the_same_pair() {
    let fx = Fx::new();
    let first = fx.login("alice", ALICE_PW).unwrap();
    let second = fx.refresh(&first).unwrap();
    fx.advance(Duration::from_secs(10));
    let again = fx.refresh(&first).unwrap();
    assert_eq!(again.session_token(), second.session_token());
    assert_eq!(again.refresh_token(), second.refresh_token());
    fx.auth(&second).expect("no family revocation");
    fx.refresh(&second)
        .expect("the new refresh token still works");
}

#[test]
fn without_a_grace_window_an_immediate_replay_is_reuse() {
    let fx = Fx::with(|t, _| t.refresh_grace = Duration::ZERO);
    let first = fx.issue("carol", &[]);
    let second = fx.refresh(&first).unwrap();
    assert_eq!(fx.refresh(&first).unwrap_err(), SessionError::RefreshReused);
    assert_eq!(fx.auth(&second).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(fx.refresh(&second).unwrap_err(), SessionError::TokenRevoked);
}

#[test]
fn logout_beats_the_grace_window() {
    let fx = Fx::new();
    let first = fx.login("alice", ALICE_PW).unwrap();
    let second = fx.refresh(&first).unwrap();
    fx.sm.logout(&fx.auth(&second).unwrap()).unwrap();
    assert_eq!(fx.refresh(&first).unwrap_err(), SessionError::TokenRevoked);
}

#[test]
fn concurrent_refreshes_of_one_token_get_one_pair() {
    let fx = Fx::new();
    let first = fx.login("alice", ALICE_PW).unwrap();
    let token = first.refresh_token().unwrap();
    let barrier = Barrier::new(8);
    let results: Vec<Result<TokenPair, SessionError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    fx.sm.refresh(token)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pairs: Vec<TokenPair> = results.into_iter().map(Result::unwrap).collect();
    for pair in &pairs {
        assert_eq!(
            pair.session_token(),
            pairs[0].session_token(),
            "one rotation only"
        );
        assert_eq!(pair.refresh_token(), pairs[0].refresh_token());
    }
    fx.auth(&pairs[0]).expect("the family was not revoked");
    fx.refresh(&pairs[0]).expect("the chain continues");
}

#[test]
fn refresh_is_refused_after_the_idle_limit() {
    let fx = Fx::with(|t, _| {
        t.session_ttl = 30 * MINUTE;
        t.idle_timeout = HOUR;
    });
    let pair = fx.login("alice", ALICE_PW).unwrap();
    fx.advance(50 * MINUTE);
    let pair = fx.refresh(&pair).expect("refreshed within the idle limit");
    fx.advance(HOUR + fx.tokens.leeway);
    let err = fx.refresh(&pair).unwrap_err();
    assert_eq!(err, SessionError::SessionExpired);
    assert_eq!(err.code(), "session_expired");
}

#[test]
fn refresh_chain_cannot_pass_the_absolute_limit() {
    let fx = Fx::with(|t, _| {
        t.session_ttl = HOUR;
        t.idle_timeout = 2 * HOUR;
        t.absolute_timeout = 3 * HOUR;
    });
    let end = t0() + 3 * HOUR;
    let mut pair = fx.login("alice", ALICE_PW).unwrap();
    for _ in 0..3 {
        fx.advance(50 * MINUTE);
        pair = fx.refresh(&pair).unwrap();
        assert_eq!(pair.session_claims().auth_time, t0());
        assert!(pair.session_claims().exp <= end);
        assert!(pair.refresh_claims().unwrap().exp <= end);
    }
    // At 2h30: the session token would run to 3h30, the refresh to 4h30.
    assert_eq!(pair.session_claims().exp, end, "exp clamped");
    assert_eq!(pair.refresh_claims().unwrap().exp, end, "exp clamped");
    let info = fx.sm.info(&fx.auth(&pair).unwrap());
    assert_eq!(info.absolute_expires_at, end);
    assert_eq!(info.idle_expires_at, Some(end));
    fx.advance(30 * MINUTE);
    // At the limit the refresh token is still inside its leeway, yet refused.
    assert_eq!(fx.refresh(&pair).unwrap_err(), SessionError::SessionExpired);
}

// ---------------------------------------------------------------- limits and revocation

#[test]
fn sixth_login_evicts_the_oldest_session() {
    let fx = Fx::new();
    let mut pairs = Vec::new();
    for _ in 0..6 {
        pairs.push(fx.login("alice", ALICE_PW).unwrap());
        fx.advance(Duration::from_secs(1));
    }
    assert_eq!(fx.auth(&pairs[0]).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(
        fx.refresh(&pairs[0]).unwrap_err(),
        SessionError::TokenRevoked
    );
    for pair in &pairs[1..] {
        fx.auth(pair).expect("the five newest sessions live");
    }
    let session = fx.auth(&pairs[5]).unwrap();
    let listed = fx.sm.list(&session);
    let sids: Vec<&str> = listed.iter().map(|s| s.sid.as_str()).collect();
    let expected: Vec<&str> = pairs[1..]
        .iter()
        .map(|p| p.session_claims().sid.as_str())
        .collect();
    assert_eq!(sids, expected, "oldest first");
    assert_eq!(listed.iter().filter(|s| s.current).count(), 1);
    assert!(listed[4].current);
    fx.auth(&fx.login("bob", BOB_PW).unwrap())
        .expect("other users are not counted");
}

#[test]
fn logout_revokes_the_session_and_its_refresh_token() {
    let fx = Fx::new();
    let pair = fx.login("alice", ALICE_PW).unwrap();
    let other = fx.login("alice", ALICE_PW).unwrap();
    let session = fx.auth(&pair).unwrap();
    fx.sm.logout(&session).unwrap();
    let err = fx.auth(&pair).unwrap_err();
    assert_eq!(err.code(), "token_revoked");
    assert_eq!(fx.refresh(&pair).unwrap_err(), SessionError::TokenRevoked);
    let remaining = fx.sm.list(&fx.auth(&other).unwrap());
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].sid, other.session_claims().sid);
}

#[test]
fn revoke_own_ends_one_of_my_sessions_but_not_anothers() {
    let fx = Fx::new();
    let mine = fx.login("alice", ALICE_PW).unwrap();
    let my_other = fx.login("alice", ALICE_PW).unwrap();
    let bobs = fx.login("bob", BOB_PW).unwrap();
    let me = fx.auth(&mine).unwrap();
    let err = fx
        .sm
        .revoke_own(&me, &bobs.session_claims().sid)
        .unwrap_err();
    assert_eq!(err, SessionError::NotFound);
    assert_eq!(err.code(), "session_not_found");
    let err = fx
        .sm
        .revoke_own(&me, &bobs.session_claims().jti)
        .unwrap_err();
    assert_eq!(err, SessionError::NotFound);
    fx.auth(&bobs).expect("bob's session untouched");
    fx.sm
        .revoke_own(&me, &my_other.session_claims().sid)
        .unwrap();
    assert_eq!(fx.auth(&my_other).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(
        fx.refresh(&my_other).unwrap_err(),
        SessionError::TokenRevoked
    );
    fx.auth(&mine).expect("the asking session lives");
}

#[test]
fn revoke_own_by_jti_ends_that_whole_session() {
    let fx = Fx::new();
    let mine = fx.login("alice", ALICE_PW).unwrap();
    let my_other = fx.login("alice", ALICE_PW).unwrap();
    let me = fx.auth(&mine).unwrap();
    fx.sm
        .revoke_own(&me, &my_other.session_claims().jti)
        .unwrap();
    assert_eq!(fx.auth(&my_other).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(
        fx.refresh(&my_other).unwrap_err(),
        SessionError::TokenRevoked
    );
    assert_eq!(fx.sm.list(&me).len(), 1);
}

#[test]
fn revoke_own_naming_the_asking_session_logs_it_out() {
    let fx = Fx::new();
    let by_sid = fx.login("alice", ALICE_PW).unwrap();
    let by_jti = fx.login("alice", ALICE_PW).unwrap();
    let kept = fx.login("alice", ALICE_PW).unwrap();
    let me = fx.auth(&by_sid).unwrap();
    fx.sm.revoke_own(&me, me.session_id()).unwrap();
    let me = fx.auth(&by_jti).unwrap();
    fx.sm.revoke_own(&me, me.jti()).unwrap();
    for pair in [&by_sid, &by_jti] {
        assert_eq!(fx.auth(pair).unwrap_err(), SessionError::TokenRevoked);
        assert_eq!(fx.refresh(pair).unwrap_err(), SessionError::TokenRevoked);
    }
    let listed = fx.sm.list(&fx.auth(&kept).unwrap());
    assert_eq!(listed.len(), 1, "both left the listing");
    assert_eq!(listed[0].sid, kept.session_claims().sid);
}

#[test]
fn admin_revoke_needs_the_admin_scope() {
    let fx = Fx::new();
    let bobs = fx.login("bob", BOB_PW).unwrap();
    let alice = fx.auth(&fx.login("alice", ALICE_PW).unwrap()).unwrap();
    let err = fx
        .sm
        .admin_revoke(&alice, AdminRevoke::Subject("bob".to_owned()))
        .unwrap_err();
    assert_eq!(err, SessionError::Forbidden);
    assert_eq!(err.code(), "insufficient_scope");
    fx.auth(&bobs).expect("nothing was revoked");
}

#[test]
fn admin_revoke_by_subject_revokes_every_token_issued_before() {
    let fx = Fx::new();
    let admin = fx.admin();
    let one = fx.login("alice", ALICE_PW).unwrap();
    fx.advance(MINUTE);
    let two = fx.login("alice", ALICE_PW).unwrap();
    let bobs = fx.login("bob", BOB_PW).unwrap();
    fx.sm
        .admin_revoke(&admin, AdminRevoke::Subject("alice".to_owned()))
        .unwrap();
    for pair in [&one, &two] {
        assert_eq!(fx.auth(pair).unwrap_err(), SessionError::TokenRevoked);
        assert_eq!(fx.refresh(pair).unwrap_err(), SessionError::TokenRevoked);
    }
    fx.auth(&bobs).expect("another subject");
    fx.advance(Duration::from_secs(1));
    let fresh = fx.login("alice", ALICE_PW).unwrap();
    fx.auth(&fresh).expect("issued after the revocation");
}

#[test]
fn admin_revoke_by_token_and_by_session() {
    let fx = Fx::new();
    let admin = fx.admin();
    let one = fx.login("alice", ALICE_PW).unwrap();
    let two = fx.login("bob", BOB_PW).unwrap();
    let jti = one.session_claims().jti.clone();
    fx.sm.admin_revoke(&admin, AdminRevoke::Token(jti)).unwrap();
    assert_eq!(fx.auth(&one).unwrap_err(), SessionError::TokenRevoked);
    let renewed = fx.refresh(&one).expect("only that token was revoked");
    fx.auth(&renewed).unwrap();
    let sid = two.session_claims().sid.clone();
    fx.sm
        .admin_revoke(&admin, AdminRevoke::Session(sid))
        .unwrap();
    assert_eq!(fx.auth(&two).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(fx.refresh(&two).unwrap_err(), SessionError::TokenRevoked);
    let err = fx
        .sm
        .admin_revoke(&admin, AdminRevoke::Token(String::new()))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

#[test]
fn revocations_survive_a_restart() {
    let fx = Fx::new();
    let pair = fx.login("alice", ALICE_PW).unwrap();
    let kept = fx.login("alice", ALICE_PW).unwrap();
    fx.sm.logout(&fx.auth(&pair).unwrap()).unwrap();
    let fx = fx.restart();
    assert_eq!(fx.auth(&pair).unwrap_err(), SessionError::TokenRevoked);
    assert_eq!(fx.refresh(&pair).unwrap_err(), SessionError::TokenRevoked);
    let session = fx.auth(&kept).expect("other sessions stay valid");
    let listed = fx.sm.list(&session);
    assert_eq!(
        listed.len(),
        1,
        "the reloaded index lists the live session, not the revoked one"
    );
    assert!(listed[0].current);
}

#[test]
fn refresh_token_reuse_after_a_restart_revokes_the_family() {
    let fx = Fx::new();
    let first = fx.login("alice", ALICE_PW).unwrap();
    let second = fx.refresh(&first).unwrap();
    let fx = fx.restart();
    // Within the grace window, but the grace copy did not survive.
    let err = fx.refresh(&first).unwrap_err();
    assert_eq!(err, SessionError::RefreshReused);
    assert_eq!(fx.auth(&second).unwrap_err(), SessionError::TokenRevoked);
}

#[test]
fn failing_store_still_enforces_revocations() {
    let fx = Fx::with(|_, _| {});
    // The state directory is a file: nothing can be written.
    let blocked = fx.tmp.path().join("blocked");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let state = StateConfig { dir: blocked };
    let sm = SessionManager::open(&fx.tokens, &fx.auth, &state, fx.clock.clone()).unwrap();
    let store = Arc::clone(sm.store());
    let pair = sm.login("alice", ALICE_PW, client(), None).unwrap();
    let second = sm.refresh(pair.refresh_token().unwrap()).unwrap();
    let session = sm.authenticate(second.session_token()).unwrap();
    sm.logout(&session).expect("logout succeeds without a disk");
    assert_eq!(
        sm.authenticate(second.session_token()).unwrap_err(),
        SessionError::TokenRevoked
    );
    assert!(matches!(store.health(), StoreHealth::Degraded { .. }));
}

// ---------------------------------------------------------------- session end

#[tokio::test]
async fn session_end_resolves_when_the_session_is_revoked() {
    let fx = Fx::new();
    let pair = fx.login("alice", ALICE_PW).unwrap();
    let session = fx.auth(&pair).unwrap();
    let mut end = fx.sm.session_end(&session);
    assert!((&mut end).now_or_never().is_none(), "live session: pending");
    fx.sm.logout(&session).unwrap();
    tokio::time::timeout(Duration::from_secs(5), end)
        .await
        .expect("resolved by the revocation");
}

#[tokio::test]
async fn session_end_resolves_at_expiry_on_the_wall_clock() {
    let fx = Fx::new();
    let pair = fx.issue("carol", &[]);
    let session = fx.auth(&pair).unwrap();
    // Already past exp: resolves on the first poll.
    fx.advance(24 * HOUR);
    assert!(fx.sm.session_end(&session).now_or_never().is_some());
    // One second before exp: pending; the clock then jumps past exp (as
    // after a suspend) and the next wall-clock check, a second later, sees it.
    fx.clock.set(session.expires_at() - Duration::from_secs(1));
    let mut end = fx.sm.session_end(&session);
    assert!((&mut end).now_or_never().is_none());
    fx.advance(HOUR);
    tokio::time::timeout(Duration::from_secs(5), end)
        .await
        .expect("resolved at expiry");
}

// ---------------------------------------------------------------- binding

#[test]
fn required_binding_refuses_unbound_issuance() {
    let fx = Fx::with(|_, a| a.binding = BindingPolicy::Required);
    let runs = fx.sm.password_verifier().argon2_runs();
    let err = fx.login("alice", ALICE_PW).unwrap_err();
    assert_eq!(err.code(), "binding_required");
    assert_eq!(fx.sm.password_verifier().argon2_runs(), runs);
    let err = fx
        .sm
        .login("alice", ALICE_PW, client(), Some(Confirmation::default()))
        .unwrap_err();
    assert_eq!(
        err,
        SessionError::BindingRequired,
        "an empty binding binds nothing"
    );
    let err = fx
        .sm
        .issue("carol", vec![], None, IssueMethod::Cli)
        .unwrap_err();
    assert_eq!(err, SessionError::BindingRequired);
    let code = fx.sm.pairing_code().unwrap().reveal().to_owned();
    let err = fx.sm.pair(&code, client(), None).unwrap_err();
    assert_eq!(err, SessionError::BindingRequired);
    fx.sm
        .pair(&code, client(), Some(x5t(1)))
        .expect("the refused attempt did not spend the code");
}

#[test]
fn binding_is_carried_through_refresh() {
    let fx = Fx::with(|_, a| a.binding = BindingPolicy::Required);
    let pair = fx
        .sm
        .login("alice", ALICE_PW, client(), Some(x5t(7)))
        .unwrap();
    assert_eq!(pair.session_claims().cnf, Some(x5t(7)));
    assert_eq!(pair.refresh_claims().unwrap().cnf, Some(x5t(7)));
    // Without a confirmation a bound refresh token is refused, unspent.
    let err = fx.refresh(&pair).unwrap_err();
    assert_eq!(err.code(), "certificate_missing");
    let mut seen = None;
    let next = fx
        .sm
        .refresh_confirmed(pair.refresh_token().unwrap(), |claims| {
            seen = claims.cnf().cloned();
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, Some(x5t(7)), "the confirmation sees the binding");
    assert_eq!(next.session_claims().cnf, Some(x5t(7)));
    assert_eq!(next.refresh_claims().unwrap().cnf, Some(x5t(7)));
    let info = fx.sm.info(&fx.auth(&next).unwrap());
    assert_eq!(info.binding, Some(x5t(7)));
}

#[test]
fn a_refused_confirmation_neither_rotates_nor_counts_as_reuse() {
    let fx = Fx::with(|_, a| a.binding = BindingPolicy::Optional);
    let pair = fx
        .sm
        .login("alice", ALICE_PW, client(), Some(x5t(7)))
        .unwrap();
    let refused = fx
        .sm
        .refresh_confirmed(pair.refresh_token().unwrap(), |_| {
            Err(clawgate::gateway::session_manager::binding::BindingError::ProofMissing)
        })
        .unwrap_err();
    assert_eq!(refused.code(), "proof_missing");
    // The refresh token was not spent: the rightful client still refreshes.
    let next = fx
        .sm
        .refresh_confirmed(pair.refresh_token().unwrap(), |_| Ok(()))
        .unwrap();
    assert!(fx.auth(&next).is_ok());
}

#[test]
fn binding_off_keeps_an_existing_binding_through_refresh() {
    let mut optional = Fx::with(|_, a| a.binding = BindingPolicy::Optional);
    let pair = optional
        .sm
        .login("alice", ALICE_PW, client(), Some(x5t(7)))
        .unwrap();
    // The operator turns binding off and restarts.
    optional.auth.binding = BindingPolicy::Off;
    let off = optional.restart();
    let next = off
        .sm
        .refresh_confirmed(pair.refresh_token().unwrap(), |_| Ok(()))
        .unwrap();
    assert_eq!(next.session_claims().cnf, Some(x5t(7)));
    let info = off.sm.info(&off.auth(&next).unwrap());
    assert_eq!(info.binding_policy, "off");
}

#[test]
fn binding_off_ignores_offered_bindings() {
    let fx = Fx::new();
    let pair = fx
        .sm
        .login("alice", ALICE_PW, client(), Some(x5t(7)))
        .unwrap();
    assert_eq!(pair.session_claims().cnf, None);
}

// ---------------------------------------------------------------- views

#[test]
fn session_info_names_idle_and_absolute_limits() {
    let fx = Fx::new();
    let pair = fx.login("alice", ALICE_PW).unwrap();
    let info = fx.sm.info(&fx.auth(&pair).unwrap());
    assert_eq!(info.idle_expires_at, Some(t0() + 72 * HOUR));
    assert_eq!(info.absolute_expires_at, t0() + 30 * 24 * HOUR);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["sub"], "alice");
    assert_eq!(json["typ"], "session");
    assert_eq!(json["auth_time"], "2023-11-14T22:13:20Z");
    assert_eq!(json["idle_expires_at"], "2023-11-17T22:13:20Z");
    assert_eq!(json["absolute_expires_at"], "2023-12-14T22:13:20Z");
    assert!(json["binding"].is_null());
    let listed = serde_json::to_value(fx.sm.list(&fx.auth(&pair).unwrap())).unwrap();
    assert_eq!(listed[0]["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(listed[0]["expires_at"], "2023-11-17T22:13:20Z");
    assert_eq!(listed[0]["current"], true);
}

#[test]
fn without_refresh_the_idle_limit_serializes_as_null() {
    let fx = Fx::with(|t, _| t.refresh = false);
    let pair = fx.issue("carol", &[]);
    let json = serde_json::to_value(fx.sm.info(&fx.auth(&pair).unwrap())).unwrap();
    assert!(json["idle_expires_at"].is_null(), "{json}");
    assert_eq!(json["exp"], "2023-11-15T22:13:20Z");
    assert_eq!(json["absolute_expires_at"], "2023-12-14T22:13:20Z");
}

#[test]
fn the_binding_policy_is_reported_as_configured() {
    for policy in [
        BindingPolicy::Off,
        BindingPolicy::Optional,
        BindingPolicy::Required,
    ] {
        let fx = Fx::with(|_, a| a.binding = policy);
        assert_eq!(fx.sm.binding_policy(), policy);
    }
}

#[test]
fn a_bound_pairs_response_names_its_binding() {
    let fx = Fx::with(|_, a| a.binding = BindingPolicy::Optional);
    let bound = fx
        .sm
        .issue_bound_at("carol", vec![], None, IssueMethod::Cli, Some(x5t(7)), t0())
        .unwrap();
    let body = bound.response_json(t0());
    let x5t = URL_SAFE_NO_PAD.encode([7u8; 32]);
    assert_eq!(body["cnf"], serde_json::json!({ "x5t#S256": x5t }));
    assert_eq!(body.as_object().unwrap().len(), 6);
    let unbound = fx.issue("carol", &[]).response_json(t0());
    assert!(unbound.get("cnf").is_none(), "{unbound}");
}

#[test]
fn the_exposed_key_ring_policy_and_store_are_the_ones_in_use() {
    use clawgate::gateway::session_token::{self as st, TokenPolicy, TokenType};
    let fx = Fx::new();
    // Parts handed in are the parts used.
    let keyring = Arc::new(KeyRing::open(&fx.tokens.keys_dir).unwrap());
    let (store, _) = RevocationStore::open(&fx.tmp.path().join("other"), fx.clock.clone());
    let store = Arc::new(store);
    let sm = SessionManager::from_parts(
        &fx.tokens,
        &fx.auth,
        Arc::clone(&keyring),
        Arc::clone(&store),
        fx.clock.clone(),
    )
    .unwrap();
    assert!(Arc::ptr_eq(sm.keyring(), &keyring));
    assert!(Arc::ptr_eq(sm.store(), &store));
    assert_eq!(sm.policy(), &TokenPolicy::from_config(&fx.tokens));
    assert_eq!(fx.sm.policy(), &TokenPolicy::from_config(&fx.tokens));
    let pair = fx.issue("carol", &[]);
    let token = pair.session_token();
    let claims = st::verify_at(
        fx.sm.keyring(),
        fx.sm.policy(),
        token,
        TokenType::Session,
        t0(),
    );
    assert_eq!(claims.unwrap().sub(), "carol");
}

// ---------------------------------------------------------------- secrets

#[test]
fn debug_output_contains_no_token_or_code() {
    let fx = Fx::new();
    let code = fx.sm.pairing_code().unwrap().reveal().to_owned();
    let pair = fx.sm.pair(&code, client(), None).unwrap();
    let session = fx.auth(&pair).unwrap();
    let errors = [
        fx.sm.pair(&code, client(), None).unwrap_err(),
        fx.sm.authenticate("v4.public.garbage").unwrap_err(),
        fx.login("alice", "pw-not-alices").unwrap_err(),
    ];
    let rendered = format!("{pair:?} {session:?} {:?} {errors:?} {errors:#?}", fx.sm);
    for secret in [
        pair.session_token(),
        pair.refresh_token().unwrap(),
        code.as_str(),
        "garbage",
        "pw-not-alices",
    ] {
        assert!(!rendered.contains(secret), "leaked in: {rendered}");
    }
    for error in &errors {
        assert!(!error.to_string().contains(&code), "{error}");
    }
}

#[test]
fn logs_of_a_session_life_cycle_contain_no_secret() {
    let buffer = LogBuffer::default();
    let subscriber = buffer.json_subscriber();
    let mut secrets = vec![ALICE_PW.to_owned()];
    tracing::subscriber::with_default(subscriber, || {
        let fx = Fx::new();
        tracing::callsite::rebuild_interest_cache();
        let code = fx.sm.pairing_code().unwrap().reveal().to_owned();
        secrets.push(code.clone());
        let _ = fx.sm.pair("WRONG-CODE-0000", client(), None);
        let owner = fx.sm.pair(&code, client(), None).unwrap();
        let _ = fx
            .sm
            .login(ALICE_PW, "typed into the name field", client(), None);
        let first = fx.login("alice", ALICE_PW).unwrap();
        let second = fx.refresh(&first).unwrap();
        let replayed = fx.refresh(&first).unwrap();
        assert_eq!(replayed.session_token(), second.session_token());
        fx.advance(MINUTE);
        let _ = fx.refresh(&first);
        let third = fx.login("alice", ALICE_PW).unwrap();
        fx.sm.logout(&fx.auth(&third).unwrap()).unwrap();
        let admin = fx.admin();
        fx.sm
            .admin_revoke(&admin, AdminRevoke::Subject("bob".to_owned()))
            .unwrap();
        for pair in [&owner, &first, &second, &third] {
            secrets.push(pair.session_token().to_owned());
            secrets.push(pair.refresh_token().unwrap().to_owned());
        }
    });
    let logs = buffer.text();
    for event in [
        "session_issued",
        "session_refreshed",
        "refresh_grace_replay",
        "refresh_reuse_detected",
        "admin_revoke",
        "session_revoked",
        "pairing_failed",
        "login_failed",
    ] {
        assert!(logs.contains(event), "no {event} event in: {logs}");
    }
    assert!(logs.contains("\"sid_prefix\""), "{logs}");
    assert!(logs.contains("\"by\":\"root\""), "{logs}");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "secret leaked into: {logs}"
        );
    }
}

#[test]
fn shared_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<SessionManager>();
    assert_send_sync::<Session>();
    assert_send_sync::<TokenPair>();
    assert_send_sync::<SessionError>();
}
