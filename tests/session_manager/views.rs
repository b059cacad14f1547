//! Session manager: views.

use crate::*;

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
