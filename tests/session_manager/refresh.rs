//! Session manager: refresh.

use crate::*;

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
