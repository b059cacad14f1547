//! Session manager: issuing.

use crate::*;

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
    // Cluster mode: Redis could not answer a refresh; retry in 1 s.
    let unavailable = SessionError::RefreshUnavailable;
    assert_eq!(unavailable.code(), "refresh_unavailable");
    assert!(
        codes.insert(unavailable.code()),
        "refresh_unavailable used twice"
    );
    assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(1)));
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
