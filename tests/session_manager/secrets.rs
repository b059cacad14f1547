//! Session manager: secrets.

use crate::*;

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
    let buffer = Logs::default();
    let subscriber = buffer.subscriber();
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
