//! The in-memory state keeps ids as bytes (issue 12 item 4) but the files
//! on disk keep today's format: a session index journal and a revocation
//! journal written in that format load, are in force, and are written back
//! in it. Real key files, journals and a manual clock in a temp directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::clock::ManualClock;
use clawgate::config::{AuthConfig, StateConfig, TokensConfig};
use clawgate::gateway::session_manager::revocation_store::{Revocation, RevocationStore};
use clawgate::gateway::session_manager::{IssueMethod, SessionManager};
use serde_json::Value;

const T0: u64 = 1_700_000_000;
const HOUR: u64 = 3_600;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A canonical 256-bit id (as minted): base64url of 32 bytes.
fn id(seed: u8) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &[seed]);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> SessionManager {
    let tokens = TokensConfig {
        keys_dir: dir.join("keys"),
        max_sessions_per_user: 3,
        ..TokensConfig::default()
    };
    let auth = AuthConfig {
        pairing: false,
        ..AuthConfig::default()
    };
    let state = StateConfig {
        dir: dir.join("state"),
    };
    SessionManager::open(&tokens, &auth, &state, Arc::clone(clock) as _).unwrap()
}

fn journal_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_session_index_journal_in_todays_format_loads_counts_and_is_written_back_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (s1, j1, s2, j2, s3, j3) = (id(1), id(2), id(3), id(4), id(5), id(6));
    // Today's format, one subject's whole list per line, the last one wins.
    let journal = format!(
        concat!(
            r#"{{"sub":"alice","sessions":[{{"sid":"{s1}","jti":"{j1}","created":{c1},"expires":{e}}}]}}"#,
            "\n",
            r#"{{"sub":"alice","sessions":[{{"sid":"{s1}","jti":"{j1}","created":{c1},"expires":{e}}},{{"sid":"{s2}","jti":"{j2}","created":{c2},"expires":{e}}}]}}"#,
            "\n",
            r#"{{"sub":"bob","sessions":[{{"sid":"{s3}","jti":"{j3}","created":{c1},"expires":{e}}}]}}"#,
            "\n",
        ),
        s1 = s1,
        j1 = j1,
        s2 = s2,
        j2 = j2,
        s3 = s3,
        j3 = j3,
        c1 = T0 - 120,
        c2 = T0 - 60,
        e = T0 + HOUR,
    );
    std::fs::write(state.join("sessions.jsonl"), journal).unwrap();

    let clock = Arc::new(ManualClock::new(at(T0)));
    let sm = open(tmp.path(), &clock);

    // Loading compacted the file: one line per subject, the same fields
    // and the same id text as before.
    let lines = journal_lines(&state.join("sessions.jsonl"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let alice = lines.iter().find(|l| l["sub"] == "alice").unwrap();
    let expected: Value = serde_json::json!([
        {"sid": s1, "jti": j1, "created": T0 - 120, "expires": T0 + HOUR},
        {"sid": s2, "jti": j2, "created": T0 - 60, "expires": T0 + HOUR},
    ]);
    assert_eq!(alice["sessions"], expected);

    // The loaded sessions are listed with their ids as written…
    let pair = sm.issue("alice", vec![], None, IssueMethod::Cli).unwrap();
    let session = sm.authenticate(pair.session_token()).unwrap();
    let listed: Vec<String> = sm.list(&session).into_iter().map(|s| s.sid).collect();
    assert_eq!(
        listed,
        [s1.clone(), s2.clone(), session.session_id().to_owned()]
    );
    // …and count toward the limit (3): the next login evicts the oldest,
    // whose sid is then revoked.
    sm.issue("alice", vec![], None, IssueMethod::Cli).unwrap();
    let store = sm.store();
    assert!(store.is_revoked_at("", &s1, "alice", T0 - 120, T0));
    assert!(!store.is_revoked_at("", &s2, "alice", T0 - 60, T0));
    let listed: Vec<String> = sm.list(&session).into_iter().map(|s| s.sid).collect();
    assert_eq!(listed.len(), 3);
    assert!(!listed.contains(&s1), "{listed:?}");

    // What was appended is in today's format too, ids as 43 characters.
    let lines = journal_lines(&state.join("sessions.jsonl"));
    let last_alice = lines.iter().rev().find(|l| l["sub"] == "alice").unwrap();
    for entry in last_alice["sessions"].as_array().unwrap() {
        let mut keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["created", "expires", "jti", "sid"], "{entry}");
        assert_eq!(entry["sid"].as_str().unwrap().len(), 43);
        assert_eq!(entry["jti"].as_str().unwrap().len(), 43);
    }
}

#[test]
fn a_line_with_an_id_that_is_not_a_256_bit_id_is_skipped_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let journal = format!(
        "{}\n{}\n",
        r#"{"sub":"alice","sessions":[{"sid":"not-an-id","jti":"x","created":1,"expires":9999999999}]}"#,
        format_args!(
            r#"{{"sub":"bob","sessions":[{{"sid":"{}","jti":"{}","created":{},"expires":{}}}]}}"#,
            id(7),
            id(8),
            T0 - 1,
            T0 + HOUR
        ),
    );
    std::fs::write(state.join("sessions.jsonl"), journal).unwrap();
    let clock = Arc::new(ManualClock::new(at(T0)));
    let sm = open(tmp.path(), &clock);
    let lines = journal_lines(&state.join("sessions.jsonl"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["sub"], "bob");
    assert!(sm.index_issue().is_none());
}

#[test]
fn a_revocation_journal_in_todays_format_loads_in_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (jti, sid) = (id(10), id(11));
    let until = T0 + HOUR;
    // Today's format: one JSON object per line, `at` plus the revocation.
    let journal = [
        format!(r#"{{"at":{T0},"kind":"token","jti":"{jti}","until":{until}}}"#),
        format!(r#"{{"at":{T0},"kind":"session","sid":"{sid}","until":{until}}}"#),
        format!(r#"{{"at":{T0},"kind":"token","jti":"typed-by-an-admin","until":{until}}}"#),
        format!(
            r#"{{"at":{T0},"kind":"subject","sub":"carol","issued_before":{T0},"until":{until}}}"#
        ),
    ]
    .join("\n");
    std::fs::write(tmp.path().join("revocations.jsonl"), journal + "\n").unwrap();
    let clock = Arc::new(ManualClock::new(at(T0)));
    let (store, report) = RevocationStore::open(tmp.path(), clock);
    assert_eq!(report.loaded, 4);
    assert!(store.is_revoked_at(&jti, &id(12), "dave", T0, T0));
    assert!(store.is_revoked_at(&id(12), &sid, "dave", T0, T0));
    assert!(store.is_revoked_at("typed-by-an-admin", &id(12), "dave", T0, T0));
    assert!(store.is_revoked_at(&id(12), &id(13), "carol", T0, T0));
    assert!(!store.is_revoked_at(&id(12), &id(13), "dave", T0, T0));
    assert!(
        !store.is_revoked_at(&sid, &jti, "dave", T0, T0),
        "kinds do not mix"
    );
    assert!(!store.is_revoked_at(&jti, &id(12), "dave", T0, until + 1));
    store.run_pending_tasks();
    assert_eq!(store.len(), 4);
}

#[test]
fn thousands_of_revocations_survive_a_restart_and_nothing_else_is_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(at(T0)));
    let ids: Vec<String> = (0..4_000u32)
        .map(|i| {
            let d = ring::digest::digest(&ring::digest::SHA256, &i.to_le_bytes());
            URL_SAFE_NO_PAD.encode(d.as_ref())
        })
        .collect();
    let (revoked, kept) = ids.split_at(2_000);
    {
        let (store, _) = RevocationStore::open(tmp.path(), Arc::clone(&clock) as _);
        for (i, jti) in revoked.iter().enumerate() {
            let r = if i % 2 == 0 {
                Revocation::token(jti.clone(), T0 + HOUR)
            } else {
                Revocation::session(jti.clone(), T0 + HOUR)
            };
            store.revoke(r).unwrap();
        }
    }
    let (store, report) = RevocationStore::open(tmp.path(), clock);
    assert_eq!(report.loaded, 2_000);
    for (i, id) in revoked.iter().enumerate() {
        let (jti, sid) = if i % 2 == 0 {
            (id.as_str(), "")
        } else {
            ("", id.as_str())
        };
        assert!(store.is_revoked_at(jti, sid, "alice", T0, T0), "{i}");
    }
    for id in kept {
        assert!(!store.is_revoked_at(id, id, "alice", T0, T0));
    }
    // The journal on disk is still one JSON object per line with text ids.
    let lines = journal_lines(&tmp.path().join("revocations.jsonl"));
    assert_eq!(lines.len(), 2_000);
    let mut on_disk: Vec<&str> = lines
        .iter()
        .map(|l| l["jti"].as_str().or(l["sid"].as_str()).unwrap())
        .collect();
    on_disk.sort_unstable();
    let mut expected: Vec<&str> = revoked.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(on_disk, expected);
}
