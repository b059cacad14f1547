use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::poll;

use super::*;
use crate::clock::ManualClock;
use crate::secret_file::{mode_of, temp_path};
use crate::test_logs::Logs;

const NOW: u64 = 1_700_000_000;
const HOUR: u64 = 3_600;

fn clock_at(unix: u64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix),
    ))
}

fn open_at(dir: &Path, unix: u64) -> (RevocationStore, OpenReport) {
    RevocationStore::open(dir, clock_at(unix))
}

fn journal_text(dir: &Path) -> String {
    fs::read_to_string(dir.join(journal::JOURNAL_FILE)).unwrap()
}

/// Puts a directory where `write_atomic` writes its temporary file, so
/// compaction fails; remove it to let compaction work again.
fn block_compaction(dir: &Path) -> PathBuf {
    let temp = temp_path(&dir.join(journal::JOURNAL_FILE));
    fs::create_dir(&temp).unwrap();
    temp
}

fn degraded_reason(store: &RevocationStore) -> String {
    match store.health() {
        StoreHealth::Degraded { reason, .. } => reason,
        StoreHealth::Healthy => panic!("expected a degraded store"),
    }
}

#[test]
fn revoked_jti_sid_and_subject_are_each_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!(report.health, StoreHealth::Healthy);
    store
        .revoke(Revocation::token("jti-1", NOW + HOUR))
        .unwrap();
    store
        .revoke(Revocation::session("sid-1", NOW + HOUR))
        .unwrap();
    store
        .revoke(Revocation::subject("alice", NOW - 10, NOW + HOUR))
        .unwrap();

    assert!(store.is_revoked_at("jti-1", "sid-x", "bob", NOW, NOW));
    assert!(store.is_revoked_at("jti-x", "sid-1", "bob", NOW, NOW));
    assert!(store.is_revoked_at("jti-x", "sid-x", "alice", NOW - 10, NOW));
    assert!(store.is_revoked_at("jti-x", "sid-x", "alice", NOW - 500, NOW));
    // A token of alice issued after the cut is not revoked.
    assert!(!store.is_revoked_at("jti-x", "sid-x", "alice", NOW - 9, NOW));
    assert!(!store.is_revoked_at("jti-x", "sid-x", "bob", NOW, NOW));
}

#[test]
fn revocation_is_in_force_through_until_and_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store.revoke(Revocation::token("j", NOW + 60)).unwrap();
    assert!(store.is_revoked_at("j", "s", "u", NOW, NOW + 60));
    assert!(!store.is_revoked_at("j", "s", "u", NOW, NOW + 61));
}

#[test]
fn subject_revocations_merge_to_the_wider_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store
        .revoke(Revocation::subject("alice", NOW, NOW + 2 * HOUR))
        .unwrap();
    // An older, shorter revocation must not narrow the existing one.
    store
        .revoke(Revocation::subject("alice", NOW - 100, NOW + HOUR))
        .unwrap();
    assert!(store.is_revoked_at("j", "s", "alice", NOW, NOW + HOUR + 1));
    drop(store);
    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!(report.loaded, 1, "duplicates merged on load");
    assert!(store.is_revoked_at("j", "s", "alice", NOW, NOW + HOUR + 1));
}

#[test]
fn revocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open_at(dir.path(), NOW);
        store
            .revoke(Revocation::token("jti-1", NOW + HOUR))
            .unwrap();
        store
            .revoke(Revocation::session("sid-1", NOW + HOUR))
            .unwrap();
        store
            .revoke(Revocation::subject("alice", NOW, NOW + HOUR))
            .unwrap();
    }
    let (store, report) = open_at(dir.path(), NOW + 5);
    assert_eq!(report.loaded, 3);
    assert_eq!(report.health, StoreHealth::Healthy);
    assert!(store.is_revoked_at("jti-1", "-", "-", 0, NOW + 5));
    assert!(store.is_revoked_at("-", "sid-1", "-", 0, NOW + 5));
    assert!(store.is_revoked_at("-", "-", "alice", NOW, NOW + 5));
}

#[test]
fn expired_revocations_are_not_loaded_back_and_compaction_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open_at(dir.path(), NOW);
        store
            .revoke(Revocation::token("short-lived", NOW + 60))
            .unwrap();
        store
            .revoke(Revocation::token("long-lived", NOW + HOUR))
            .unwrap();
    }
    assert!(journal_text(dir.path()).contains("short-lived"));
    let later = NOW + 61;
    let (store, report) = open_at(dir.path(), later);
    assert_eq!(report.loaded, 1);
    assert_eq!(report.expired_dropped, 1);
    assert!(report.compacted);
    assert!(!store.is_revoked_at("short-lived", "-", "-", 0, later));
    assert!(store.is_revoked_at("long-lived", "-", "-", 0, later));
    let text = journal_text(dir.path());
    assert!(!text.contains("short-lived"), "{text}");
    assert!(text.contains("long-lived"), "{text}");
}

#[test]
fn revocation_already_past_its_until_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store.revoke(Revocation::token("old", NOW - 1)).unwrap();
    assert!(!store.is_revoked_at("old", "-", "-", 0, NOW));
    assert!(!journal_text(dir.path()).contains("old"));
}

#[test]
fn empty_or_oversized_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    assert!(matches!(
        store.revoke(Revocation::token("", NOW + HOUR)),
        Err(StoreError::InvalidId)
    ));
    let long = "x".repeat(MAX_ID_BYTES + 1);
    assert!(matches!(
        store.revoke(Revocation::session(long, NOW + HOUR)),
        Err(StoreError::InvalidId)
    ));
    assert!(!store.is_revoked_at("", "", "", 0, NOW));
}

#[test]
fn torn_last_line_is_tolerated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open_at(dir.path(), NOW);
        store.revoke(Revocation::token("kept", NOW + HOUR)).unwrap();
    }
    let path = dir.path().join(journal::JOURNAL_FILE);
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"at":1700000000,"kind":"token","jti":"to"#)
        .unwrap();
    drop(file);

    let (store, report) = open_at(dir.path(), NOW);
    assert!(report.torn_tail);
    assert_eq!(report.corrupt_lines, 0);
    assert_eq!(
        report.health,
        StoreHealth::Healthy,
        "a torn tail is not damage"
    );
    assert!(store.is_revoked_at("kept", "-", "-", 0, NOW));
    assert!(
        journal_text(dir.path()).ends_with("}\n"),
        "torn tail removed"
    );
    // Appends after the repair land on their own line.
    store.revoke(Revocation::token("next", NOW + HOUR)).unwrap();
    drop(store);
    let (_, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (2, 0));
}

#[test]
fn corrupt_line_degrades_loads_the_rest_and_keeps_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    let good = format!(
        r#"{{"at":{NOW},"kind":"session","sid":"sid-1","until":{}}}"#,
        NOW + HOUR
    );
    fs::write(&path, format!("garbage line\n{good}\n")).unwrap();

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (1, 1));
    assert!(store.is_revoked_at("-", "sid-1", "-", 0, NOW));
    let reason = degraded_reason(&store);
    assert!(reason.contains("unreadable"), "{reason}");
    let copy = dir
        .path()
        .join(format!("{}.corrupt-{NOW}", journal::JOURNAL_FILE));
    assert!(fs::read_to_string(copy).unwrap().contains("garbage line"));
    // A later successful write does not hide that revocations were lost.
    store.revoke(Revocation::token("j", NOW + HOUR)).unwrap();
    assert!(matches!(store.health(), StoreHealth::Degraded { .. }));
}

#[test]
fn unwritable_state_dir_degrades_but_revocations_stay_in_force() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: fails even for root.
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let state = blocker.join("state");

    let (store, report) = open_at(&state, NOW);
    assert!(matches!(report.health, StoreHealth::Degraded { .. }));
    let reason = degraded_reason(&store);
    assert!(reason.contains("revocations.jsonl"), "{reason}");

    let err = store
        .revoke(Revocation::token("jti-1", NOW + HOUR))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotPersisted { .. }), "{err}");
    assert!(store.is_revoked_at("jti-1", "-", "-", 0, NOW));
}

#[test]
fn journal_is_0600_and_a_created_state_dir_is_0700() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (store, _) = open_at(&state, NOW);
    store.revoke(Revocation::token("j", NOW + HOUR)).unwrap();
    assert_eq!(mode_of(&state).unwrap(), 0o700);
    assert_eq!(mode_of(&state.join(journal::JOURNAL_FILE)).unwrap(), 0o600);
}

#[test]
fn full_disk_reports_the_error_keeps_enforcing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store
        .revoke(Revocation::token("before", NOW + HOUR))
        .unwrap();
    lock(&store.journal).fail_writes = true;

    let err = store
        .revoke(Revocation::token("during", NOW + HOUR))
        .unwrap_err();
    match &err {
        StoreError::NotPersisted { source } => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
        }
        StoreError::InvalidId => panic!("wrong error: {err}"),
    }
    assert!(store.is_revoked_at("during", "-", "-", 0, NOW));
    assert!(degraded_reason(&store).contains("append"));

    lock(&store.journal).fail_writes = false;
    store
        .revoke(Revocation::token("after", NOW + HOUR))
        .unwrap();
    assert_eq!(store.health(), StoreHealth::Healthy);
    drop(store);

    // The half-written line was cut off: the journal reloads cleanly.
    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (2, 0));
    assert!(store.is_revoked_at("after", "-", "-", 0, NOW));
    assert!(!store.is_revoked_at("during", "-", "-", 0, NOW));
}

#[test]
fn degraded_store_logs_a_stable_alert_without_token_material() {
    let logs = Logs::default();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"").unwrap();
    tracing::subscriber::with_default(logs.subscriber(), || {
        let (store, _) = open_at(&blocker.join("state"), NOW);
        let _ = store.revoke(Revocation::token("jti-distinctive", NOW + HOUR));
    });
    let text = logs.text();
    assert!(
        text.contains(r#""alert":"revocation_store_degraded""#),
        "{text}"
    );
    assert!(!text.contains("jti-distinctive"), "{text}");
}

#[tokio::test]
async fn wait_revoked_completes_on_a_matching_revocation_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    let mut wait = Box::pin(store.wait_revoked("jti-1", "sid-1", "alice", NOW));
    assert!(poll!(&mut wait).is_pending());
    store
        .revoke(Revocation::token("jti-other", NOW + HOUR))
        .unwrap();
    store
        .revoke(Revocation::subject("alice", NOW - 1, NOW + HOUR))
        .unwrap();
    assert!(poll!(&mut wait).is_pending(), "cut before this token's iat");
    store
        .revoke(Revocation::session("sid-1", NOW + HOUR))
        .unwrap();
    assert!(poll!(&mut wait).is_ready());
}

#[tokio::test]
async fn wait_revoked_returns_at_once_for_an_already_revoked_token() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store
        .revoke(Revocation::token("jti-1", NOW + HOUR))
        .unwrap();
    let mut wait = Box::pin(store.wait_revoked("jti-1", "sid-1", "alice", NOW));
    assert!(poll!(&mut wait).is_ready());
}

#[tokio::test]
async fn lagging_waiter_rechecks_the_memory_set() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    let mut wait = Box::pin(store.wait_revoked("jti-1", "sid-1", "alice", NOW));
    assert!(poll!(&mut wait).is_pending());
    // The matching revocation's event is pushed out of the buffer by a
    // flood of others before the waiter runs again.
    let matching = Revocation::session("sid-1", NOW + HOUR);
    store.memory.insert(&matching, NOW);
    for i in 0..(EVENT_CAPACITY + 10) {
        let revocation = Revocation::token(format!("other-{i}"), NOW + HOUR);
        let _ = store.events.send(RevocationEvent {
            revocation,
            revoked_at: NOW,
        });
    }
    assert!(poll!(&mut wait).is_ready());
}

#[tokio::test]
async fn lagging_waiter_keeps_waiting_when_its_token_was_not_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    // Unconstrained: one poll drains every buffered event (tokio's
    // cooperative budget would otherwise return Pending part-way).
    let mut wait = Box::pin(tokio::task::unconstrained(
        store.wait_revoked("jti-1", "sid-1", "alice", NOW),
    ));
    assert!(poll!(&mut wait).is_pending());
    // A flood of unrelated events (sent directly: no fsync per event).
    for i in 0..(EVENT_CAPACITY + 10) {
        let revocation = Revocation::token(format!("other-{i}"), NOW + HOUR);
        store.memory.insert(&revocation, NOW);
        let _ = store.events.send(RevocationEvent {
            revocation,
            revoked_at: NOW,
        });
    }
    assert!(
        poll!(&mut wait).is_pending(),
        "a lag alone must not end the wait"
    );
    store
        .revoke(Revocation::subject("alice", NOW, NOW + HOUR))
        .unwrap();
    assert!(poll!(&mut wait).is_ready());
}

#[test]
fn corrupt_journal_is_left_untouched_when_no_copy_can_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    let original = format!("garbage line\n{}\n", token_line("kept", NOW, NOW + HOUR));
    fs::write(&path, &original).unwrap();
    // A directory where the copy would go: fs::copy fails, even for root.
    let copy = dir
        .path()
        .join(format!("{}.corrupt-{NOW}", journal::JOURNAL_FILE));
    fs::create_dir(&copy).unwrap();

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (1, 1));
    assert!(!report.compacted, "compacting would destroy the only copy");
    let reason = degraded_reason(&store);
    assert!(reason.contains("not compacted"), "{reason}");
    assert!(reason.contains("cannot keep a copy"), "{reason}");
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
    assert!(store.is_revoked_at("kept", "-", "-", 0, NOW));
    // The load problem stays after a successful append.
    store.revoke(Revocation::token("new", NOW + HOUR)).unwrap();
    assert!(matches!(store.health(), StoreHealth::Degraded { .. }));
    drop(store);

    // Once a copy can be kept, the next start keeps it and compacts.
    fs::remove_dir(&copy).unwrap();
    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (2, 1));
    assert!(report.compacted);
    assert!(fs::read_to_string(&copy).unwrap().contains("garbage line"));
    assert!(!journal_text(dir.path()).contains("garbage line"));
    assert!(store.is_revoked_at("new", "-", "-", 0, NOW));
}

#[test]
fn failed_compaction_degrades_until_the_next_append_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    // The last record lacks its newline (a hand-edited journal).
    let original = format!(
        "{}\n{}",
        token_line("expired", NOW - HOUR, NOW - 1),
        token_line("kept", NOW, NOW + HOUR)
    );
    fs::write(&path, &original).unwrap();
    let temp = block_compaction(dir.path());

    let (store, report) = open_at(dir.path(), NOW);
    assert!(!report.compacted);
    assert_eq!((report.loaded, report.expired_dropped), (1, 1));
    assert!(degraded_reason(&store).contains("cannot compact"));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        original,
        "not rewritten"
    );
    assert!(store.is_revoked_at("kept", "-", "-", 0, NOW));
    assert!(!store.is_revoked_at("expired", "-", "-", 0, NOW));

    // An uncompacted journal is still correct: the next append clears it.
    store.revoke(Revocation::token("next", NOW + HOUR)).unwrap();
    assert_eq!(store.health(), StoreHealth::Healthy);
    drop(store);

    fs::remove_dir(&temp).unwrap();
    let (store, report) = open_at(dir.path(), NOW);
    // "kept" got its newline before "next" was appended: both read back.
    assert_eq!((report.loaded, report.corrupt_lines), (2, 0));
    assert!(report.compacted);
    assert!(store.is_revoked_at("kept", "-", "-", 0, NOW));
    assert!(store.is_revoked_at("next", "-", "-", 0, NOW));
}

#[test]
fn torn_rest_of_a_failed_append_is_cut_at_the_next_open_not_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store
        .revoke(Revocation::token("before", NOW + HOUR))
        .unwrap();
    // What a failed append leaves behind: half a line...
    let path = dir.path().join(journal::JOURNAL_FILE);
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"at":1700000000,"kind":"tok"#).unwrap();
    drop(file);
    // ...and a handle on which the write fails and so does the truncation
    // that would remove it (/dev/full: ENOSPC, then EINVAL).
    let full = fs::OpenOptions::new()
        .append(true)
        .open("/dev/full")
        .unwrap();
    lock(&store.journal).use_handle(full);

    let err = store
        .revoke(Revocation::token("lost", NOW + HOUR))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotPersisted { .. }), "{err}");
    assert!(store.is_revoked_at("lost", "-", "-", 0, NOW));
    assert!(degraded_reason(&store).contains("append"));

    // The broken handle was dropped: the next append reopens the journal,
    // cuts the torn half line (never acknowledged), and succeeds.
    store.revoke(Revocation::token("next", NOW + HOUR)).unwrap();
    assert_eq!(store.health(), StoreHealth::Healthy);
    let text = journal_text(dir.path());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(r#""jti":"before""#), "{text}");
    assert!(lines[1].contains(r#""jti":"next""#), "{text}");
    drop(store);

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (2, 0));
    assert_eq!(report.health, StoreHealth::Healthy, "no false alarm");
    assert!(store.is_revoked_at("before", "-", "-", 0, NOW));
    assert!(store.is_revoked_at("next", "-", "-", 0, NOW));
}

#[test]
fn torn_tail_left_by_a_failed_compaction_is_cut_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    let kept = token_line("kept", NOW, NOW + HOUR);
    // A crash mid-write left a torn last line longer than one read chunk.
    let torn = format!(
        r#"{{"at":{NOW},"kind":"token","jti":"{}"#,
        "x".repeat(5_000)
    );
    fs::write(&path, format!("{kept}\n{torn}")).unwrap();
    let temp = block_compaction(dir.path());

    let (store, report) = open_at(dir.path(), NOW);
    assert!(report.torn_tail && !report.compacted);
    store.revoke(Revocation::token("next", NOW + HOUR)).unwrap();
    assert_eq!(store.health(), StoreHealth::Healthy);
    drop(store);
    fs::remove_dir(&temp).unwrap();

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (2, 0));
    assert!(!report.torn_tail);
    assert_eq!(report.health, StoreHealth::Healthy, "no false alarm");
    assert!(store.is_revoked_at("kept", "-", "-", 0, NOW));
    assert!(store.is_revoked_at("next", "-", "-", 0, NOW));
}

#[test]
fn blank_lines_in_the_journal_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    let a = token_line("a", NOW, NOW + HOUR);
    let b = token_line("b", NOW + 1, NOW + HOUR);
    fs::write(&path, format!("\n  \n{a}\n\t\r\n{b}\n\n")).unwrap();

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (2, 0));
    assert!(!report.torn_tail);
    assert_eq!(report.health, StoreHealth::Healthy);
    assert!(store.is_revoked_at("a", "-", "-", 0, NOW));
    assert!(store.is_revoked_at("b", "-", "-", 0, NOW));
    assert_eq!(journal_text(dir.path()), format!("{a}\n{b}\n"), "compacted");
}

#[test]
fn journal_lines_longer_than_4_kib_count_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    // Valid JSON padded with trailing spaces: only the length cap refuses it.
    let padded = |jti: &str, len: usize| {
        let line = token_line(jti, NOW, NOW + HOUR);
        format!("{line}{}", " ".repeat(len - line.len()))
    };
    let longest = padded("at-limit", 4_096);
    let too_long = padded("over-limit", 4_097);
    assert!(serde_json::from_str::<journal::Record>(&too_long).is_ok());
    fs::write(&path, format!("{longest}\n{too_long}\n")).unwrap();

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!((report.loaded, report.corrupt_lines), (1, 1));
    assert!(store.is_revoked_at("at-limit", "-", "-", 0, NOW));
    assert!(!store.is_revoked_at("over-limit", "-", "-", 0, NOW));
    assert!(degraded_reason(&store).contains("unreadable"));
}

#[test]
fn duplicate_records_merge_to_the_latest_until_of_each_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::JOURNAL_FILE);
    let session = |at: u64, until: u64| {
        format!(r#"{{"at":{at},"kind":"session","sid":"s","until":{until}}}"#)
    };
    let lines = [
        token_line("t", NOW, NOW + 2 * HOUR),
        session(NOW, NOW + HOUR),
        // Later records with a shorter (token) or longer (session) until.
        token_line("t", NOW + 1, NOW + HOUR),
        session(NOW + 1, NOW + 3 * HOUR),
    ];
    fs::write(&path, lines.join("\n") + "\n").unwrap();

    let (store, report) = open_at(dir.path(), NOW);
    assert_eq!(report.loaded, 2);
    let later = NOW + 2 * HOUR;
    assert!(store.is_revoked_at("t", "-", "-", 0, later));
    assert!(store.is_revoked_at("-", "s", "-", 0, NOW + 3 * HOUR));
    assert!(!store.is_revoked_at("t", "-", "-", 0, later + 1));
    let text = journal_text(dir.path());
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(&token_line("t", NOW + 1, NOW + 2 * HOUR)),
        "{text}"
    );
    assert!(text.contains(&session(NOW + 1, NOW + 3 * HOUR)), "{text}");
}

#[test]
fn len_counts_one_entry_per_revoked_id() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    assert!(store.is_empty());
    for revocation in [
        Revocation::token("j", NOW + HOUR),
        Revocation::session("s", NOW + HOUR),
        Revocation::subject("u", NOW, NOW + HOUR),
        Revocation::subject("u", NOW + 5, NOW + HOUR),
    ] {
        store.revoke(revocation).unwrap();
    }
    store.run_pending_tasks();
    assert_eq!(store.len(), 3, "two revocations of one subject merge");
    assert!(!store.is_empty());
    drop(store);

    let (store, report) = open_at(dir.path(), NOW);
    store.run_pending_tasks();
    assert_eq!(store.len(), 3);
    assert_eq!(report.loaded, 3);
}

#[test]
fn debug_shows_health_but_no_revoked_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    store
        .revoke(Revocation::token("jti-distinctive", NOW + HOUR))
        .unwrap();
    let text = format!("{store:?}");
    assert!(text.contains("Healthy"), "{text}");
    assert!(!text.contains("jti-distinctive"), "{text}");

    let blocker = dir.path().join("file");
    fs::write(&blocker, b"").unwrap();
    let (store, _) = open_at(&blocker.join("state"), NOW);
    let _ = store.revoke(Revocation::session("sid-distinctive", NOW + HOUR));
    let text = format!("{store:?}");
    assert!(text.contains("Degraded"), "{text}");
    assert!(!text.contains("sid-distinctive"), "{text}");
}

fn token_line(jti: &str, at: u64, until: u64) -> String {
    format!(r#"{{"at":{at},"kind":"token","jti":"{jti}","until":{until}}}"#)
}

#[test]
fn store_and_its_wait_future_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    send_sync(&store);
    send(&store.wait_revoked("j", "s", "u", NOW));
}

// ---- cluster mode hooks -------------------------------------------------

#[test]
fn the_publisher_gets_each_local_revocation_after_its_journal_line() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    let seen: Arc<std::sync::Mutex<Vec<(Record, String)>>> = Arc::default();
    let (log, journal_dir) = (Arc::clone(&seen), dir.path().to_path_buf());
    assert!(store.set_publisher(Box::new(move |record: &Record| {
        // The line is on disk when the fleet hears of it.
        let text = fs::read_to_string(journal_dir.join(journal::JOURNAL_FILE)).unwrap();
        log.lock().unwrap().push((record.clone(), text));
    })));
    assert!(!store.set_publisher(Box::new(|_: &Record| {})), "set once");
    store
        .revoke(Revocation::token("jti-1", NOW + HOUR))
        .unwrap();
    // Already over: ignored, so not published either.
    store.revoke(Revocation::token("jti-2", NOW - 1)).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.revocation, Revocation::token("jti-1", NOW + HOUR));
    assert_eq!(seen[0].0.at, NOW);
    assert!(seen[0].1.contains("\"jti\":\"jti-1\""));
}

#[test]
fn remote_revocations_apply_journal_and_broadcast_only_what_is_news() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_at(dir.path(), NOW);
    let published = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&published);
    store.set_publisher(Box::new(move |_: &Record| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }));
    store
        .revoke(Revocation::session("sid-own", NOW + HOUR))
        .unwrap();
    let mut events = store.subscribe();
    let rec = |r| Record {
        at: NOW,
        revocation: r,
    };
    let batch = [
        rec(Revocation::session("sid-own", NOW + HOUR)), // our own, echoed
        rec(Revocation::token("jti-remote", NOW + HOUR)),
        rec(Revocation::subject("bob", NOW - 5, NOW + HOUR)),
        rec(Revocation::subject("bob", NOW - 9, NOW + HOUR)), // narrower
        rec(Revocation::token("", NOW + HOUR)),               // invalid
        rec(Revocation::token("jti-old", NOW - 1)),           // over
    ];
    let changed = store.apply_remote(&batch, NOW);
    assert_eq!(changed, [false, true, true, false, false, false]);
    let news: Vec<Record> = batch
        .iter()
        .zip(&changed)
        .filter(|(_, c)| **c)
        .map(|(r, _)| r.clone())
        .collect();
    store.journal_remote(&news).unwrap();
    store.journal_remote(&[]).unwrap();
    assert!(store.is_revoked_at("jti-remote", "", "", NOW, NOW));
    assert!(store.is_revoked_at("", "", "bob", NOW - 5, NOW));
    assert_eq!(
        published.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "never re-published"
    );
    assert!(events.try_recv().is_ok() && events.try_recv().is_ok());
    assert!(events.try_recv().is_err(), "two broadcasts: the news");
    // One line per news item, after the local one; all survive a restart.
    assert_eq!(journal_text(dir.path()).lines().count(), 3);
    let mut live = store.journaled(NOW).unwrap();
    live.sort_by(|a, b| a.revocation.id().cmp(b.revocation.id()));
    assert_eq!(live.len(), 3);
    let (reopened, report) = open_at(dir.path(), NOW);
    assert_eq!(report.loaded, 3);
    assert!(reopened.is_revoked_at("jti-remote", "", "", NOW, NOW));
}
