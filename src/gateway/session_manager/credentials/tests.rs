use std::sync::{Arc, Barrier};
use std::time::Duration;

use argon2::{Params, PasswordHash};

use super::*;
use crate::config::{AuthConfig, UserConfig};
use crate::test_logs::Logs;

const NOW: u64 = 1_700_000_000;
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

// ---- pairing code -------------------------------------------------------

fn pairing(max_attempts: u32, lockout_secs: u64) -> PairingCode {
    PairingCode::generate(&AuthConfig {
        pairing_max_attempts: max_attempts,
        pairing_max_attempts_per_client: max_attempts,
        pairing_lockout: Duration::from_secs(lockout_secs),
        ..AuthConfig::default()
    })
    .unwrap()
}

/// A syntactically valid code that differs from `code` in its first symbol.
fn wrong_code(code: &str) -> String {
    let first = if code.starts_with('2') { '3' } else { '2' };
    format!("{first}{}", &code[1..])
}

#[test]
fn pairing_code_has_three_groups_of_four_unambiguous_symbols() {
    let a = pairing(5, 900);
    let b = pairing(5, 900);
    let code = a.reveal();
    assert_eq!(code.len(), 14, "{code}");
    let groups: Vec<&str> = code.split('-').collect();
    assert_eq!(groups.len(), 3);
    assert!(groups.iter().all(|g| g.len() == 4));
    assert!(
        code.chars()
            .filter(|&c| c != '-')
            .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)),
        "{code}"
    );
    assert_ne!(
        a.reveal(),
        b.reveal(),
        "60 random bits never repeat in practice"
    );
}

#[test]
fn pairing_code_redeems_once_then_reports_already_used() {
    let p = pairing(5, 900);
    let code = p.reveal().to_owned();
    assert_eq!(p.redeem_at(&code, CLIENT, NOW), Ok(()));
    assert!(p.is_used());
    assert_eq!(
        p.redeem_at(&code, CLIENT, NOW),
        Err(PairingError::AlreadyUsed)
    );
    assert_eq!(
        p.redeem_at(&wrong_code(&code), CLIENT, NOW),
        Err(PairingError::AlreadyUsed)
    );
}

#[test]
fn pairing_code_forgives_case_separators_and_lookalikes() {
    let p = pairing(5, 900);
    let typed: String = p
        .reveal()
        .chars()
        .filter(|&c| c != '-')
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let spaced = format!("{} {}", &typed[..6], &typed[6..]);
    assert_eq!(p.redeem_at(&spaced, CLIENT, NOW), Ok(()));
}

#[test]
fn wrong_codes_lock_out_even_the_right_code_until_the_lockout_ends() {
    let p = pairing(3, 900);
    let code = p.reveal().to_owned();
    let wrong = wrong_code(&code);
    assert_eq!(p.redeem_at(&wrong, CLIENT, NOW), Err(PairingError::Invalid));
    assert_eq!(
        p.redeem_at("not a code", CLIENT, NOW),
        Err(PairingError::Invalid)
    );
    assert_eq!(
        p.redeem_at(&wrong, CLIENT, NOW),
        Err(PairingError::LockedOut {
            retry_after: Duration::from_secs(900)
        })
    );
    assert_eq!(
        p.redeem_at(&code, CLIENT, NOW + 10),
        Err(PairingError::LockedOut {
            retry_after: Duration::from_secs(890)
        }),
        "the right code is refused while locked out"
    );
    assert_eq!(
        p.redeem_at(&code, CLIENT, NOW + 899),
        Err(PairingError::LockedOut {
            retry_after: Duration::from_secs(1)
        })
    );
    assert!(!p.is_used());
    assert_eq!(p.redeem_at(&code, CLIENT, NOW + 900), Ok(()));
}

#[test]
fn attempts_start_over_after_a_lockout() {
    let p = pairing(2, 60);
    let wrong = wrong_code(p.reveal());
    p.redeem_at(&wrong, CLIENT, NOW).unwrap_err();
    assert!(matches!(
        p.redeem_at(&wrong, CLIENT, NOW),
        Err(PairingError::LockedOut { .. })
    ));
    assert_eq!(
        p.redeem_at(&wrong, CLIENT, NOW + 60),
        Err(PairingError::Invalid)
    );
    assert!(matches!(
        p.redeem_at(&wrong, CLIENT, NOW + 60),
        Err(PairingError::LockedOut { .. })
    ));
}

#[test]
fn concurrent_redeems_of_the_right_code_succeed_once() {
    let p = Arc::new(pairing(5, 900));
    let code = p.reveal().to_owned();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (p, barrier, code) = (Arc::clone(&p), Arc::clone(&barrier), code.clone());
            std::thread::spawn(move || {
                barrier.wait();
                p.redeem_at(&code, CLIENT, NOW)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
}

#[test]
fn pairing_code_debug_and_errors_hide_the_code() {
    let p = pairing(1, 900);
    let code = p.reveal().to_owned();
    let bare: String = code.chars().filter(|&c| c != '-').collect();
    let err = p.redeem_at(&wrong_code(&code), CLIENT, NOW).unwrap_err();
    let rendered = format!("{p:?} {err} {err:?}");
    assert!(!rendered.contains(&code), "{rendered}");
    assert!(!rendered.contains(&bare), "{rendered}");
    assert!(!rendered.contains(&code[..4]), "{rendered}");
}

#[test]
fn an_offer_longer_than_64_bytes_is_refused_even_around_the_right_code() {
    let p = pairing(5, 900);
    let code = p.reveal().to_owned();
    // Separators are ignored, so only the length cap refuses this offer.
    let padded = format!("{code}{}", "-".repeat(64 - code.len() + 1));
    assert_eq!(padded.len(), 65);
    assert_eq!(
        p.redeem_at(&padded, CLIENT, NOW),
        Err(PairingError::Invalid)
    );
    assert!(!p.is_used());
    let at_the_cap = format!("{code}{}", "-".repeat(64 - code.len()));
    assert_eq!(p.redeem_at(&at_the_cap, CLIENT, NOW), Ok(()));
}

#[test]
fn offers_read_lookalikes_as_digits_and_refuse_foreign_symbols() {
    let canonical = |s: &str| pairing::normalize(s).map(|c| *c);
    assert_eq!(
        canonical("oIl0-1234-5678"),
        Some(*b"011012345678"),
        "O reads as 0, I and L as 1, case and dashes do not matter"
    );
    assert_eq!(canonical("7kq2 m9xd 4htb"), Some(*b"7KQ2M9XD4HTB"));
    // U is outside Crockford base32; punctuation and non-ASCII are not separators.
    for offer in [
        "7KQ2-M9XD-4HTU",
        "7KQ2_M9XD_4HTB",
        "7KQ2-M9XD-4HTé",
        "7KQ2-M9XD-4HT",
    ] {
        assert_eq!(canonical(offer), None, "{offer}");
    }
}

#[test]
fn an_offer_with_a_foreign_symbol_counts_as_a_wrong_code() {
    let p = pairing(2, 900);
    let code = p.reveal().to_owned();
    let foreign = format!("U{}", &code[1..]);
    assert_eq!(
        p.redeem_at(&foreign, CLIENT, NOW),
        Err(PairingError::Invalid)
    );
    assert_eq!(
        p.redeem_at(&foreign, CLIENT, NOW),
        Err(PairingError::LockedOut {
            retry_after: Duration::from_secs(900)
        })
    );
}

// ---- passwords ----------------------------------------------------------

/// Light parameters keep debug-build tests fast; the production parameters
/// are asserted in `hash_password_uses_the_owasp_parameters`.
fn user(name: &str, password: &str, scopes: &[&str]) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password_hash: insecure_hash_password_for_tests(password).unwrap(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn verifier() -> PasswordVerifier {
    PasswordVerifier::new(&[
        user("alice", "correct horse battery staple", &["admin"]),
        user("bob", "hunter2-but-longer", &[]),
    ])
    .unwrap()
}

#[test]
fn hash_password_uses_the_owasp_parameters() {
    let phc = hash_password("a passphrase").unwrap();
    let parsed = PasswordHash::new(&phc).unwrap();
    assert_eq!(parsed.algorithm, argon2::ARGON2ID_IDENT);
    assert_eq!(parsed.version, Some(0x13));
    let params = Params::try_from(&parsed).unwrap();
    assert_eq!(
        (params.m_cost(), params.t_cost(), params.p_cost()),
        (19_456, 2, 1)
    );
    assert_eq!(parsed.salt.as_ref().map(|s| s.len()), Some(16));
    assert_eq!(parsed.hash.as_ref().map(|h| h.len()), Some(32));
    assert!(!phc.contains("a passphrase"));
}

#[test]
fn correct_password_returns_the_user_and_scopes() {
    let v = verifier();
    let user = v.verify("alice", "correct horse battery staple").unwrap();
    assert_eq!(user.name, "alice");
    assert_eq!(user.scopes, vec!["admin".to_owned()]);
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_error_and_the_same_work() {
    let v = verifier();
    let before = v.argon2_runs();
    let wrong = v.verify("alice", "wrong password").unwrap_err();
    assert_eq!(v.argon2_runs(), before + 1);
    let unknown = v
        .verify("mallory", "correct horse battery staple")
        .unwrap_err();
    assert_eq!(v.argon2_runs(), before + 2);
    assert!(matches!(wrong, CredentialError::InvalidCredentials));
    assert!(matches!(unknown, CredentialError::InvalidCredentials));
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(!unknown.to_string().contains("mallory"));
}

#[test]
fn dummy_hash_has_the_users_parameters() {
    let v = verifier();
    let alice = &v.users["alice"].hash;
    assert_eq!(v.dummy.params, alice.params);
    assert_eq!(v.dummy.algorithm, alice.algorithm);
    assert_eq!(v.dummy.hash.as_ref().map(|h| h.len()), Some(32));
    assert_ne!(v.dummy.salt, alice.salt);
}

#[test]
fn no_users_means_every_login_fails_after_the_same_work() {
    let v = PasswordVerifier::new(&[]).unwrap();
    let params = Params::try_from(&v.dummy).unwrap();
    assert_eq!(params.m_cost(), PRODUCTION_PARAMS.m_cost());
    assert_eq!(params.t_cost(), PRODUCTION_PARAMS.t_cost());
}

#[test]
fn over_long_password_is_refused_after_one_argon2_run() {
    let v = verifier();
    let long = "x".repeat(10_000);
    let before = v.argon2_runs();
    assert!(matches!(
        v.verify("alice", &long),
        Err(CredentialError::InvalidCredentials)
    ));
    assert_eq!(v.argon2_runs(), before + 1);
}

#[test]
fn bad_hash_is_a_startup_error_naming_the_user_not_the_hash() {
    let cases = [
        (
            "$argon2id$v=19$m=8,t=1,p=1$!!notbase64!!$AAAA",
            "not a PHC string",
        ),
        ("plaintext-password", "not a PHC string"),
        (
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$dGhpcyBpcyBub3QgYSBoYXNo",
            "not argon2id",
        ),
        ("$argon2id$v=19$m=8,t=1,p=1", "salt or hash missing"),
        (
            "$argon2id$v=16$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$dGhpcyBpcyBub3QgYSBoYXNo",
            "not argon2 version 19",
        ),
    ];
    for (hash, problem) in cases {
        let users = [UserConfig {
            name: "carol".to_owned(),
            password_hash: hash.to_owned(),
            scopes: Vec::new(),
        }];
        let err = PasswordVerifier::new(&users).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"carol\""), "{msg}");
        assert!(msg.contains(problem), "{hash}: {msg}");
        assert!(!msg.contains(hash), "{msg}");
    }
}

#[test]
fn verifier_debug_hides_hashes() {
    let users = [user("alice", "pw-alice-123456", &[])];
    let v = PasswordVerifier::new(&users).unwrap();
    let rendered = format!("{v:?}");
    assert!(!rendered.contains("argon2"), "{rendered}");
    assert!(!rendered.contains(&users[0].password_hash), "{rendered}");
}

#[test]
fn users_hashed_with_other_parameters_are_named_in_a_warning_without_their_hash() {
    let first = user("alice", "pw-alice-123456", &[]);
    let odd_params = Params::new(Params::MIN_M_COST * 2, 2, 1, Some(32)).unwrap();
    let odd = UserConfig {
        name: "bob".to_owned(),
        password_hash: password::hash_with("pw-bob-123456", odd_params).unwrap(),
        scopes: Vec::new(),
    };
    let logs = Logs::default();
    let v = tracing::subscriber::with_default(logs.subscriber(), || {
        PasswordVerifier::new(&[first.clone(), odd.clone()]).unwrap()
    });
    let text = logs.text();
    assert!(text.contains(r#""user":"bob""#), "{text}");
    assert!(text.contains("parameters differ"), "{text}");
    assert!(
        !text.contains("alice"),
        "alice shares the dummy's parameters: {text}"
    );
    assert!(!text.contains(&odd.password_hash), "{text}");
    assert!(!text.contains("$argon2id$"), "{text}");
    // The odd user still logs in: the warning is about timing, not validity.
    assert_eq!(v.verify("bob", "pw-bob-123456").unwrap().name, "bob");
}

// ---- rate limiter -------------------------------------------------------

#[test]
fn rate_limiter_allows_the_limit_then_refuses_with_time_left() {
    let r = RateLimiter::new(3);
    for _ in 0..3 {
        assert_eq!(r.check_at("10.0.0.1", NOW), Ok(()));
    }
    assert_eq!(
        r.check_at("10.0.0.1", NOW + 20),
        Err(RetryAfter(Duration::from_secs(40)))
    );
    // Other keys have their own window.
    assert_eq!(r.check_at("10.0.0.2", NOW + 20), Ok(()));
}

#[test]
fn rate_limiter_resets_after_the_window() {
    let r = RateLimiter::new(2);
    r.check_at("alice", NOW).unwrap();
    r.check_at("alice", NOW + 1).unwrap();
    assert!(r.check_at("alice", NOW + 59).is_err());
    assert_eq!(r.check_at("alice", NOW + 60), Ok(()));
    assert_eq!(r.check_at("alice", NOW + 61), Ok(()));
    assert!(r.check_at("alice", NOW + 62).is_err());
}

#[test]
fn full_rate_table_puts_newcomers_in_one_shared_window() {
    let r = RateLimiter::with_max_keys(2, 2);
    r.check_at("a", NOW).unwrap();
    r.check_at("b", NOW).unwrap();
    r.run_pending_tasks();
    // The table is full: c and d share one window of 2.
    assert_eq!(r.check_at("c", NOW), Ok(()));
    assert_eq!(r.check_at("d", NOW), Ok(()));
    assert!(r.check_at("c", NOW).is_err());
    assert!(r.check_at("e", NOW).is_err());
    // Tracked keys keep their own counts.
    assert_eq!(r.check_at("a", NOW), Ok(()));
    assert!(r.check_at("a", NOW).is_err());
}

#[test]
fn rate_limiter_debug_shows_its_size_but_no_key() {
    let r = RateLimiter::new(3);
    r.check_at("203.0.113.7", NOW).unwrap();
    r.check_at("carol", NOW).unwrap();
    r.run_pending_tasks();
    let rendered = format!("{r:?}");
    assert_eq!(rendered, "RateLimiter { limit_per_minute: 3, keys: 2 }");
}

#[test]
fn credential_types_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&pairing(5, 900));
    send_sync(&verifier());
    send_sync(&RateLimiter::new(1));
}

#[test]
fn client_addresses_count_per_ipv4_address_and_per_ipv6_64() {
    let key = |s: &str| client_addr_key(s.parse().unwrap());
    assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
}

#[test]
fn pairing_lockout_is_per_client_under_a_global_backstop() {
    let p = PairingCode::generate(&AuthConfig {
        pairing_max_attempts: 4,
        pairing_max_attempts_per_client: 2,
        ..AuthConfig::default()
    })
    .unwrap();
    let code = p.reveal().to_owned();
    let wrong = wrong_code(&code);
    let (a, b, c) = (
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        "192.0.2.3".parse().unwrap(),
    );
    assert_eq!(p.redeem_at(&wrong, a, NOW), Err(PairingError::Invalid));
    assert!(matches!(
        p.redeem_at(&wrong, a, NOW),
        Err(PairingError::LockedOut { .. })
    ));
    assert!(matches!(
        p.redeem_at(&code, a, NOW),
        Err(PairingError::LockedOut { .. })
    ));
    // Another address is not locked by a's guesses...
    assert_eq!(p.redeem_at(&wrong, b, NOW), Err(PairingError::Invalid));
    // ...until the wrong codes of all addresses reach the backstop.
    assert!(matches!(
        p.redeem_at(&wrong, b, NOW),
        Err(PairingError::LockedOut { .. })
    ));
    assert!(matches!(
        p.redeem_at(&code, c, NOW),
        Err(PairingError::LockedOut { .. })
    ));
    assert_eq!(p.redeem_at(&code, c, NOW + 900), Ok(()));
}

#[test]
fn login_limit_is_per_user_and_client_under_a_per_user_ceiling() {
    let l = LoginLimiter::new(2, 3);
    let (a, b, c) = (
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        "192.0.2.3".parse().unwrap(),
    );
    l.check_at("alice", a, NOW).unwrap();
    l.check_at("alice", a, NOW).unwrap();
    assert!(l.check_at("alice", a, NOW).is_err(), "a's own budget");
    l.check_at("alice", b, NOW)
        .expect("b is not locked out by a");
    assert!(l.check_at("alice", c, NOW).is_err(), "the per-user ceiling");
    l.check_at("bob", c, NOW).expect("another user");
}
