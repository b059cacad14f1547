//! Session manager: session end.

use crate::*;

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
