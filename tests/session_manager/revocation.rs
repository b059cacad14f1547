//! Session manager: limits and revocation.

use crate::*;

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
