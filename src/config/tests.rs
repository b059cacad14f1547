use std::time::Duration;

use super::*;

#[test]
fn default_file_equals_built_in_defaults() {
    let parsed = parse(DEFAULT_CONFIG_TOML).unwrap();
    assert_eq!(parsed, Config::default());
    Config::from_toml(DEFAULT_CONFIG_TOML).unwrap();
}

#[test]
fn empty_file_is_the_defaults() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.tokens.session_ttl, Duration::from_secs(86_400));
    assert_eq!(c.hsts.max_age, 31_536_000);
    assert!(!c.hsts.preload);
}

#[test]
fn bad_duration_names_section_key_and_fix() {
    let err = Config::from_toml("[tls]\nrenew_before = \"3x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[tls] renew_before"), "{err}");
    assert!(err.contains("\"3x\": not a duration"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn unknown_key_is_rejected() {
    let err = Config::from_toml("[server]\nlisten_port = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_port"), "{err}");
    let err = Config::from_toml("[nonsense]\n").unwrap_err().to_string();
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn validation_collects_every_problem() {
    let text =
        "[tokens]\nmax_sessions_per_user = 0\nissuer = \"\"\n[upstream]\nurl = \"ftp://x\"\n";
    let ConfigError::Invalid(problems) = Config::from_toml(text).unwrap_err() else {
        panic!("expected Invalid");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("[upstream] url")));
}

#[test]
fn bad_log_filter_is_rejected_before_start() {
    let err = Config::from_toml("[log]\nlevel = \"clawgate=loud\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[log] level"), "{err}");
    let ok = Config::from_toml("[log]\nlevel = \"clawgate=debug,warn\"\n").unwrap();
    assert_eq!(ok.log.level, "clawgate=debug,warn");
}

#[test]
fn cert_and_key_paths_go_together() {
    let err = Config::from_toml("[tls]\ncert_path = \"a.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[tls] cert_path"), "{err}");
}

#[test]
fn hsts_max_age_zero_is_allowed() {
    let c = Config::from_toml("[hsts]\nmax_age = 0\n").unwrap();
    assert_eq!(c.hsts.max_age, 0);
}

#[test]
fn tilde_is_expanded_with_home() {
    let mut c = Config::default();
    c.expand_home(Some(Path::new("/home/u")));
    assert_eq!(c.tls.cert_dir, Path::new("/home/u/.zeroclaw/certs"));
    assert_eq!(c.tokens.keys_dir, Path::new("keys"));
}

#[test]
fn user_debug_hides_password_hash() {
    let text = "[[auth.users]]\nname = \"alice\"\npassword_hash = \"$argon2id$v=19$secretish\"\n";
    let c = Config::from_toml(text).unwrap();
    let shown = format!("{:?}", c.auth.users);
    assert!(!shown.contains("secretish"), "{shown}");
}

#[test]
fn fingerprints_are_normalized() {
    let fp = "AB:".repeat(31) + "AB";
    assert_eq!(normalize_fingerprint(&fp).unwrap(), "ab".repeat(32));
    assert!(normalize_fingerprint("abc").is_none());
}

#[test]
fn connection_deadlines_must_be_above_zero() {
    let text = "[server]\nidle_timeout = \"0s\"\nauth_body_timeout = \"0s\"\n";
    let ConfigError::Invalid(problems) = Config::from_toml(text).unwrap_err() else {
        panic!("expected Invalid");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("[server] idle_timeout")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("[server] auth_body_timeout")),
        "{problems:?}"
    );
    let off = Config::from_toml("[server]\nmax_connections_per_ip = 0\n").unwrap();
    assert_eq!(off.server.max_connections_per_ip, 0);
}
