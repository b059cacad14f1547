//! Session manager: binding.

use crate::*;

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
