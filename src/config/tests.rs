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
    // Issue 13: the keys default next to the certificates, not in the working directory.
    assert_eq!(c.tokens.keys_dir, Path::new("/home/u/.zeroclaw/keys"));
}

#[test]
fn user_debug_hides_password_hash() {
    // A hash that `serve` accepts (the rules refuse one that does not parse).
    let c = Config::from_toml(&user_toml("alice", GOOD_HASH, "[]")).unwrap();
    let shown = format!("{:?}", c.auth.users);
    assert!(shown.contains("alice"), "{shown}");
    assert!(
        !shown.contains("argon2") && !shown.contains("V8GSz3"),
        "{shown}"
    );
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

fn user_toml(name: &str, hash: &str, scopes: &str) -> String {
    format!("[[auth.users]]\nname = {name:?}\npassword_hash = {hash:?}\nscopes = {scopes}\n")
}

/// A real argon2id PHC string (8 KiB, one pass): parses, checks nothing else.
const GOOD_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$V8GSz3ZT9ZcjgLfTY6iTMtOIrDCtIJxmNyMZhwSKovI";

fn problems(text: &str) -> Vec<String> {
    match Config::from_toml(text) {
        Err(ConfigError::Invalid(problems)) => problems,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn user_scopes_and_names_that_cannot_go_into_a_token_are_refused() {
    Config::from_toml(&user_toml("alice", GOOD_HASH, "[\"read\", \"a:b/c~!\"]")).unwrap();
    let found = problems(&user_toml("alice", GOOD_HASH, "[\"read write\"]"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("[auth.users] scopes: user \"alice\": scope \"read write\""),
        "{found:?}"
    );
    for name in ["", "eve\nadmin", &"x".repeat(257)] {
        let found = problems(&user_toml(name, GOOD_HASH, "[]"));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("[auth.users] name: ") && p.contains("1-256 bytes")),
            "{name:?}: {found:?}"
        );
    }
    Config::from_toml(&user_toml(&"y".repeat(256), GOOD_HASH, "[]")).unwrap();
}

#[test]
fn unusable_password_hash_is_refused_naming_the_user_not_the_hash() {
    for (hash, problem) in [
        ("$argon2id$v=19$garbage-secret-ish", "not a PHC string"),
        (
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$V8GSz3ZT9ZcjgLfTY6iTMtOIrDCtIJxmNyMZhwSKovI",
            "not argon2id",
        ),
        ("$argon2id$v=19$m=8,t=1,p=1", "salt or hash missing"),
    ] {
        let found = problems(&user_toml("dave", hash, "[]"));
        assert_eq!(found.len(), 1, "{found:?}");
        let p = &found[0];
        assert!(
            p.starts_with("[auth.users] password_hash: for \"dave\""),
            "{p}"
        );
        assert!(p.contains(problem), "{problem} not in {p}");
        assert!(
            !p.contains("garbage-secret-ish") && !p.contains("c2Fsd"),
            "{p}"
        );
    }
}

#[test]
fn token_lifetime_rules_are_config_rules() {
    let cases = [
        (
            "session_ttl = \"999ms\"",
            "[tokens] session_ttl: must be at least 1s",
        ),
        (
            "idle_timeout = \"999ms\"",
            "[tokens] idle_timeout: must be at least 1s",
        ),
        (
            "absolute_timeout = \"101years\"",
            "[tokens] absolute_timeout: must be at most 100 years",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(
            problems(&format!("[tokens]\n{line}\n")),
            [message],
            "{line}"
        );
    }
    // Without refresh tokens the idle limit is unused: only 0 is refused.
    Config::from_toml("[tokens]\nrefresh = false\nidle_timeout = \"999ms\"\n").unwrap();
    assert_eq!(
        problems("[tokens]\nrefresh = false\nidle_timeout = \"0s\"\n"),
        ["[tokens] idle_timeout: must be at least 1s"]
    );
}

#[test]
fn upstream_url_is_parsed_into_a_typed_value() {
    let c = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:3000/\"\n").unwrap();
    let url = c.upstream.upstream_url().unwrap().unwrap();
    assert_eq!(url.authority().as_str(), "127.0.0.1:3000");
    assert_eq!(url.to_string(), "http://127.0.0.1:3000");
    let found = problems("[upstream]\nurl = \"http://x/api\"\n");
    assert_eq!(
        found,
        [
            "[upstream] url: \"http://x/api\" must be http://host:port (no path; the upstream is expected on a private interface)"
        ]
    );
}

fn cluster_problems(section: &str) -> Vec<String> {
    match Config::from_toml(section) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(other) => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn cluster_defaults_to_standalone_and_its_rules_apply_only_in_redis_mode() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.cluster.mode, ClusterMode::Standalone);
    // A bad URL is ignored while the section is unused.
    assert!(cluster_problems("[cluster]\nurl = \"nonsense\"\n").is_empty());
    let ok = "[auth]\npairing = false\n[cluster]\nmode = \"redis\"\nurl = \"redis://127.0.0.1:6390/2\"\n";
    assert!(
        cluster_problems(ok).is_empty(),
        "{:?}",
        cluster_problems(ok)
    );
    let tls = "[auth]\npairing = false\n[cluster]\nmode = \"redis\"\nurl = \"rediss://cache.internal:6380\"\n";
    assert!(cluster_problems(tls).is_empty());
}

#[test]
fn cluster_url_rules_name_the_fix() {
    let base = "[auth]\npairing = false\n[cluster]\nmode = \"redis\"\n";
    for (url, needle) in [
        ("redis://:hunter2@127.0.0.1:6379", "password_file"),
        ("redis://user:pw@127.0.0.1:6379", "password_file"),
        ("http://127.0.0.1:6379", "redis://"),
        ("redis://127.0.0.1:6379/db", "database number"),
        ("nonsense", "redis://127.0.0.1:6379/0"),
    ] {
        let problems = cluster_problems(&format!("{base}url = \"{url}\"\n"));
        assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        assert!(problems[0].starts_with("[cluster] url"), "{problems:?}");
        assert!(problems[0].contains(needle), "{url}: {problems:?}");
        // The password itself is never echoed back.
        assert!(!problems[0].contains("hunter2"), "{problems:?}");
    }
}

#[test]
fn cluster_mode_refuses_pairing_and_unusable_timeouts() {
    let problems = cluster_problems("[cluster]\nmode = \"redis\"\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("[auth] pairing"), "{problems:?}");
    assert!(problems[0].contains("token issue"), "{problems:?}");

    let problems = cluster_problems(
        "[auth]\npairing = false\n[cluster]\nmode = \"redis\"\ncommand_timeout = \"10s\"\n\
         stale_after = \"100ms\"\nprefix = \"a b\"\nstream_retention = \"1s\"\n",
    );
    for key in [
        "command_timeout",
        "stale_after",
        "prefix",
        "stream_retention",
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("[cluster] {key}"))),
            "{key} not refused: {problems:?}"
        );
    }
}

#[test]
fn workers_zero_means_one_per_cpu_and_a_runaway_count_is_refused() {
    let auto = Config::from_toml("").unwrap();
    assert_eq!(auto.server.workers, 0);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(auto.server.worker_threads(), cpus);
    let three = Config::from_toml("[server]\nworkers = 3\n").unwrap();
    assert_eq!(three.server.worker_threads(), 3);
    let ConfigError::Invalid(problems) =
        Config::from_toml("[server]\nworkers = 100000\n").unwrap_err()
    else {
        panic!("expected Invalid");
    };
    assert!(
        problems.iter().any(|p| p.starts_with("[server] workers")),
        "{problems:?}"
    );
}
