//! The keys directory with real keys and files: first start, rotation,
//! staging, pruning, hand edits picked up by reloads, unusable entries
//! skipped with their reason, the watcher's change detection, and no key
//! material in Debug output or logs.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::common;

use common::logs::Logs;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawgate::gateway::session_token::keyring::{self, KeyError, KeyInfo, KeyRing, KeyStatus};
use clawgate::gateway::session_token::{
    self as st, TokenDraft, TokenError, TokenPolicy, TokenType,
};
use clawgate::secret_file::mode_of;
use tempfile::TempDir;

const HOUR: Duration = Duration::from_secs(3_600);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

fn policy() -> TokenPolicy {
    TokenPolicy::new("clawgate", "clawgate", Duration::from_secs(30))
}

fn keys_dir() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    (tmp, dir)
}

fn key_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".key"))
        .collect();
    names.sort();
    names
}

fn mint(ring: &KeyRing, now: SystemTime) -> String {
    let draft = TokenDraft::session("alice", HOUR);
    st::mint_at(ring, &policy(), draft, now)
        .unwrap()
        .expose()
        .to_owned()
}

fn verify(ring: &KeyRing, token: &str, now: SystemTime) -> Result<String, TokenError> {
    st::verify_at(ring, &policy(), token, TokenType::Session, now).map(|v| v.kid().to_owned())
}

fn status_of(ring: &KeyRing, kid: &str) -> Option<KeyStatus> {
    ring.public_keys()
        .into_iter()
        .find(|k| k.kid == kid)
        .map(|k| k.status)
}

fn find<'a>(keys: &'a [KeyInfo], kid: &str) -> &'a KeyInfo {
    keys.iter().find(|k| k.kid == kid).unwrap()
}

#[test]
fn open_or_init_creates_a_private_dir_with_one_0600_signing_key() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    assert_eq!(mode_of(&dir).unwrap(), 0o700);
    let files = key_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = dir.join(&files[0]);
    assert_eq!(mode_of(&path).unwrap(), 0o600);
    let content = fs::read_to_string(&path).unwrap();
    assert!(content.starts_with("k4.secret.") && content.ends_with('\n'));
    assert_eq!(content.lines().count(), 1);
    let signer = ring.signer().unwrap();
    assert!(signer.kid().starts_with("k4.pid."));
    assert!(files[0].starts_with("1700000000-"), "{files:?}");
    // A second start reuses the key.
    let again = KeyRing::open_or_init_at(&dir, at(10)).unwrap();
    assert_eq!(again.signer().unwrap().kid(), signer.kid());
    assert_eq!(key_files(&dir).len(), 1);
}

#[test]
fn empty_dir_opens_with_no_signer_and_missing_dir_fails() {
    let (_tmp, dir) = keys_dir();
    assert!(matches!(
        KeyRing::open(&dir),
        Err(KeyError::DirUnreadable { .. })
    ));
    fs::create_dir(&dir).unwrap();
    let ring = KeyRing::open(&dir).unwrap();
    assert!(matches!(ring.signer(), Err(KeyError::NoSigningKey { .. })));
    assert!(ring.public_keys().is_empty());
}

#[test]
fn generate_on_a_dir_with_a_signer_stages_a_published_key_that_does_not_sign() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let signer = ring.signer().unwrap().kid().to_owned();
    let staged = keyring::generate(&dir, at(60)).unwrap();
    assert_eq!(staged.status, KeyStatus::Staged);
    assert!(staged.staged_at.is_some() && staged.activated_at.is_none());
    assert!(
        staged
            .file
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("next-")
    );
    assert_eq!(mode_of(&staged.file).unwrap(), 0o600);
    let report = ring.reload();
    assert_eq!(report.added, std::slice::from_ref(&staged.kid));
    assert_eq!(report.signer, report.previous_signer);
    assert_eq!(status_of(&ring, &staged.kid), Some(KeyStatus::Staged));
    assert_eq!(status_of(&ring, &signer), Some(KeyStatus::Signing));
    assert_eq!(ring.signer().unwrap().kid(), signer);
    assert_eq!(verify(&ring, &mint(&ring, at(60)), at(60)).unwrap(), signer);
}

#[test]
fn rotation_promotes_the_staged_key_and_old_tokens_keep_verifying() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let old_kid = ring.signer().unwrap().kid().to_owned();
    let old_token = mint(&ring, t0());
    let staged = keyring::generate(&dir, at(60)).unwrap();
    let rotated = keyring::rotate(&dir, at(120)).unwrap();
    assert_eq!(rotated.kid, staged.kid);
    assert_eq!(rotated.status, KeyStatus::Signing);
    assert_eq!(rotated.activated_at, Some(at(120)));
    assert!(!staged.file.exists(), "the staged file was renamed");
    let report = ring.reload();
    assert_eq!(report.previous_signer.as_deref(), Some(old_kid.as_str()));
    assert_eq!(report.signer.as_deref(), Some(staged.kid.as_str()));
    assert_eq!(verify(&ring, &old_token, at(130)).unwrap(), old_kid);
    let new_token = mint(&ring, at(130));
    assert_eq!(verify(&ring, &new_token, at(130)).unwrap(), staged.kid);
    let listed = keyring::list(&dir).unwrap();
    let old = find(&listed, &old_kid);
    assert_eq!(
        (old.status, old.activated_at, old.retired_at),
        (KeyStatus::Retired, Some(t0()), Some(at(120)))
    );
    assert_eq!(
        ring.public_keys()[0].kid,
        staged.kid,
        "signer is listed first"
    );
}

#[test]
fn rotate_without_a_staged_key_generates_a_new_signer() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let first = ring.signer().unwrap().kid().to_owned();
    let second = keyring::rotate(&dir, at(5)).unwrap();
    // Same second: activation times stay strictly ordered.
    let third = keyring::rotate(&dir, at(5)).unwrap();
    assert_ne!(second.kid, first);
    assert_eq!(third.activated_at, Some(at(6)));
    ring.reload();
    assert_eq!(ring.signer().unwrap().kid(), third.kid);
    assert_eq!(status_of(&ring, &second.kid), Some(KeyStatus::Retired));
    assert_eq!(key_files(&dir).len(), 3);
}

#[test]
fn prune_removes_only_keys_retired_longer_than_retain_and_never_the_signer() {
    let (_tmp, dir) = keys_dir();
    let a = keyring::generate(&dir, t0()).unwrap();
    let b = keyring::rotate(&dir, at(100)).unwrap();
    let c = keyring::rotate(&dir, at(200)).unwrap();
    let d = keyring::generate(&dir, at(210)).unwrap();
    assert_eq!(d.status, KeyStatus::Staged);
    // a retired at 100 (120 s ago), b retired at 200 (20 s ago).
    let removed = keyring::prune(&dir, Duration::from_secs(50), at(220)).unwrap();
    assert_eq!(removed.iter().map(|k| &k.kid).collect::<Vec<_>>(), [&a.kid]);
    assert!(!a.file.exists());
    let kept: Vec<String> = keyring::list(&dir)
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert!(kept.contains(&b.kid) && kept.contains(&c.kid) && kept.contains(&d.kid));
    // Far in the future with no retention: still never the signer or staged key.
    let removed = keyring::prune(&dir, Duration::ZERO, at(1_000_000)).unwrap();
    assert_eq!(removed.iter().map(|k| &k.kid).collect::<Vec<_>>(), [&b.kid]);
    let left = keyring::list(&dir).unwrap();
    assert_eq!(find(&left, &c.kid).status, KeyStatus::Signing);
    assert_eq!(find(&left, &d.kid).status, KeyStatus::Staged);
    assert_eq!(left.len(), 2);
}

#[test]
fn garbage_files_are_skipped_and_reported_while_good_keys_still_verify() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let token = mint(&ring, t0());
    let public = ring.public_keys()[0].public.clone();
    fs::write(dir.join("junk.key"), "this is not a key SECRET-CANARY").unwrap();
    fs::write(dir.join("1800000000-pub.key"), format!("{public}\n")).unwrap();
    fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let report = ring.reload();
    let mut skipped: Vec<_> = report.skipped.iter().map(|s| s.path.clone()).collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [dir.join("1800000000-pub.key"), dir.join("junk.key")]
    );
    let text = format!("{report:?}");
    assert!(
        !text.contains("SECRET-CANARY") && !text.contains(&public),
        "{text}"
    );
    assert!(
        report.added.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert!(verify(&ring, &token, t0()).is_ok());
    assert!(
        ring.signer().is_ok(),
        "a broken newer activated file does not take over"
    );
    let listing = keyring::inspect(&dir).unwrap();
    assert_eq!((listing.keys.len(), listing.skipped.len()), (1, 2));
}

#[test]
fn key_file_rewritten_with_garbage_keeps_the_last_good_key_until_deleted() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let token = mint(&ring, t0());
    let file = ring.keys()[0].file.clone();
    fs::write(&file, "half-written").unwrap();
    let report = ring.reload();
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].kept_previous);
    assert!(!report.changed());
    assert!(verify(&ring, &token, t0()).is_ok());
    assert!(ring.signer().is_ok());
    fs::remove_file(&file).unwrap();
    let report = ring.reload();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(verify(&ring, &token, t0()), Err(TokenError::UnknownKey));
}

#[test]
fn hand_deleted_key_stops_verifying_after_reload() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let old_kid = ring.signer().unwrap().kid().to_owned();
    let old_token = mint(&ring, t0());
    keyring::rotate(&dir, at(10)).unwrap();
    ring.reload();
    assert!(verify(&ring, &old_token, at(10)).is_ok());
    let old_file = find(&ring.keys(), &old_kid).file.clone();
    fs::remove_file(old_file).unwrap();
    let report = ring.reload();
    assert_eq!(report.removed, std::slice::from_ref(&old_kid));
    assert_eq!(
        verify(&ring, &old_token, at(10)),
        Err(TokenError::UnknownKey)
    );
    assert!(ring.verifying_key(&old_kid).is_none());
}

#[test]
fn hand_added_unconventional_file_verifies_only() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let (_other_tmp, other_dir) = keys_dir();
    let partner = KeyRing::open_or_init_at(&other_dir, t0()).unwrap();
    let partner_token = mint(&partner, t0());
    let partner_file = &partner.keys()[0].file;
    fs::copy(partner_file, dir.join("partner.key")).unwrap();
    let report = ring.reload();
    let partner_kid = partner.signer().unwrap().kid().to_owned();
    assert_eq!(report.added, std::slice::from_ref(&partner_kid));
    assert_eq!(verify(&ring, &partner_token, t0()).unwrap(), partner_kid);
    let info = find(&ring.keys(), &partner_kid).clone();
    assert!(info.unmanaged && info.status == KeyStatus::Retired && info.retired_at.is_none());
    assert_ne!(ring.signer().unwrap().kid(), partner_kid);
    assert!(
        keyring::prune(&dir, Duration::ZERO, at(1_000_000))
            .unwrap()
            .is_empty()
    );
    assert!(dir.join("partner.key").exists());
}

#[test]
fn unconventional_files_alone_do_not_make_a_signer() {
    let (_tmp, dir) = keys_dir();
    let (_other_tmp, other_dir) = keys_dir();
    let other = KeyRing::open_or_init_at(&other_dir, t0()).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::copy(&other.keys()[0].file, dir.join("mine.key")).unwrap();
    let ring = KeyRing::open(&dir).unwrap();
    assert!(ring.signer().is_err());
    assert_eq!(ring.public_keys().len(), 1);
    // First serve then activates a fresh key beside it.
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    assert_ne!(ring.signer().unwrap().kid(), other.signer().unwrap().kid());
}

#[test]
fn open_or_init_promotes_a_staged_key_when_nothing_signs() {
    let (_tmp, dir) = keys_dir();
    let first = keyring::generate(&dir, t0()).unwrap();
    let staged = keyring::generate(&dir, at(1)).unwrap();
    fs::remove_file(&first.file).unwrap();
    let ring = KeyRing::open_or_init_at(&dir, at(2)).unwrap();
    assert_eq!(ring.signer().unwrap().kid(), staged.kid);
    assert_eq!(key_files(&dir).len(), 1);
}

#[test]
fn debug_output_of_keys_and_rings_holds_no_secret() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let secret_line = fs::read_to_string(&ring.keys()[0].file).unwrap();
    let secret_b64 = secret_line
        .trim()
        .strip_prefix("k4.secret.")
        .unwrap()
        .to_owned();
    let signer = ring.signer().unwrap();
    let rendered = [
        format!("{signer:?}"),
        format!("{ring:?}"),
        format!("{:?}", ring.verifying_key(signer.kid()).unwrap()),
        format!("{:?}", ring.reload()),
        format!("{:?}", keyring::inspect(&dir).unwrap()),
    ];
    for text in rendered {
        assert!(
            !text.contains(&secret_b64[..24]),
            "secret in debug output: {text}"
        );
    }
    assert_eq!(format!("{signer:?}"), "SigningKey { .. }");
}

#[test]
fn published_keys_serialize_as_the_well_known_document() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    keyring::generate(&dir, at(1)).unwrap();
    ring.reload();
    let json = serde_json::to_value(serde_json::json!({ "keys": ring.public_keys() })).unwrap();
    let keys = json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["status"], "signing");
    assert_eq!(keys[1]["status"], "staged");
    for key in keys {
        assert_eq!(key.as_object().unwrap().len(), 3, "{key}");
        assert!(key["kid"].as_str().unwrap().starts_with("k4.pid."));
        assert!(key["public"].as_str().unwrap().starts_with("k4.public."));
    }
}

#[test]
fn unreadable_dir_on_reload_keeps_every_loaded_key() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let token = mint(&ring, t0());
    let moved = dir.with_file_name("moved");
    fs::rename(&dir, &moved).unwrap();
    let report = ring.reload();
    assert!(report.dir_error.is_some());
    assert!(!report.changed());
    assert!(verify(&ring, &token, t0()).is_ok());
    assert!(
        ring.reload_if_changed().is_none(),
        "no reload storm while it stays gone"
    );
    fs::rename(&moved, &dir).unwrap();
    assert!(ring.reload_if_changed().is_some());
}

#[test]
fn loose_permissions_are_reported_but_the_key_still_loads() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let file = ring.keys()[0].file.clone();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let report = ring.reload();
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert!(report.warnings[0].contains("0644"));
    assert!(ring.signer().is_ok());
}

#[test]
fn reload_if_changed_only_reloads_after_a_change() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    assert!(ring.reload_if_changed().is_none());
    fs::write(dir.join("README.md"), "not a key").unwrap();
    assert!(
        ring.reload_if_changed().is_none(),
        "non-key files do not count"
    );
    let staged = keyring::generate(&dir, at(1)).unwrap();
    let report = ring.reload_if_changed().unwrap();
    assert_eq!(report.added, [staged.kid]);
    assert!(ring.reload_if_changed().is_none());
}

#[tokio::test]
async fn watcher_picks_up_a_rotation_without_restart() {
    let (_tmp, dir) = keys_dir();
    let ring = Arc::new(KeyRing::open_or_init_at(&dir, t0()).unwrap());
    let before = ring.signer().unwrap().kid().to_owned();
    let watcher = Arc::clone(&ring).spawn_watcher(Duration::from_millis(10));
    let rotated = keyring::rotate(&dir, at(10)).unwrap();
    assert!(
        common::eventually(Duration::from_secs(5), || ring.signer().unwrap().kid()
            != before)
        .await,
        "watcher never reloaded"
    );
    assert_eq!(ring.signer().unwrap().kid(), rotated.kid);
    drop(ring);
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn key_ring_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<KeyRing>();
    assert_send_sync::<keyring::SigningKey>();
    assert_send_sync::<keyring::VerifyingKey>();
}

#[test]
fn key_file_parser_rejects_without_quoting_content() {
    let err = keyring::parse_key_file(b"k4.secret.SECRET-CANARY").unwrap_err();
    assert!(!err.to_string().contains("SECRET-CANARY"), "{err}");
    assert!(keyring::parse_key_file(b"").is_err());
}

#[test]
fn unusable_key_entries_are_skipped_with_their_reason_and_the_ring_keeps_its_keys() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let signer = ring.signer().unwrap().kid().to_owned();
    let good = fs::read_to_string(&ring.keys()[0].file).unwrap();
    fs::create_dir(dir.join("1800000000-dir.key")).unwrap();
    // A valid key padded past the size cap is refused, not read.
    fs::write(
        dir.join("next-big.key"),
        format!("{}{good}", " ".repeat(2_000)),
    )
    .unwrap();
    let report = ring.reload();
    let mut skipped: Vec<(String, String, bool)> = report
        .skipped
        .iter()
        .map(|s| {
            let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, s.reason.clone(), s.kept_previous)
        })
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            (
                "1800000000-dir.key".to_owned(),
                "not a regular file".to_owned(),
                false
            ),
            (
                "next-big.key".to_owned(),
                "too large for a key file".to_owned(),
                false
            ),
        ]
    );
    assert!(!report.changed(), "{report:?}");
    assert_eq!(ring.signer().unwrap().kid(), signer);
    assert_eq!(ring.keys().len(), 1);
}

#[test]
fn a_key_file_name_that_is_not_utf8_is_skipped_and_never_signs() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let signer = ring.signer().unwrap().kid().to_owned();
    let (_other_tmp, other_dir) = keys_dir();
    let other = KeyRing::open_or_init_at(&other_dir, t0()).unwrap();
    // A valid key under a newer activation time, in a name that is not UTF-8.
    let odd = dir.join(OsStr::from_bytes(b"1800000000-\xff.key"));
    fs::copy(&other.keys()[0].file, &odd).unwrap();
    let report = ring.reload();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].path, odd);
    assert_eq!(report.skipped[0].reason, "file name is not UTF-8");
    assert!(!report.skipped[0].kept_previous);
    assert_eq!(ring.signer().unwrap().kid(), signer);
    assert!(
        ring.verifying_key(other.signer().unwrap().kid()).is_none(),
        "its key does not verify either"
    );
}

#[test]
fn the_same_key_in_two_files_is_listed_once_with_a_warning() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let signer = ring.keys()[0].clone();
    let copy = dir.join("copy.key");
    fs::copy(&signer.file, &copy).unwrap();
    let report = ring.reload();
    assert!(!report.changed(), "{report:?}");
    let keys = ring.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        (keys[0].status, &keys[0].file),
        (KeyStatus::Signing, &signer.file),
        "listed under its first place: the signer"
    );
    let expected = format!(
        "{}: same key as {}; ignored",
        copy.display(),
        signer.file.display()
    );
    assert_eq!(report.warnings, std::slice::from_ref(&expected));
    assert_eq!(keyring::inspect(&dir).unwrap().warnings, [expected]);
}

#[test]
fn a_keys_dir_under_a_regular_file_is_an_io_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, "not a directory").unwrap();
    let dir = file.join("keys");
    for err in [
        KeyRing::open_or_init_at(&dir, t0()).unwrap_err(),
        keyring::generate(&dir, t0()).unwrap_err(),
    ] {
        match &err {
            KeyError::Io { path, source } => {
                assert_eq!(path, &dir);
                assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory);
            }
            other => panic!("unexpected error: {other:?}"),
        }
        assert!(err.to_string().starts_with(&dir.display().to_string()));
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn a_verifying_key_is_the_published_public_half_of_its_kid() {
    use pasetors::keys::AsymmetricPublicKey;
    use pasetors::version4::V4;
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    keyring::generate(&dir, at(1)).unwrap();
    ring.reload();
    let published = ring.public_keys();
    assert_eq!(published.len(), 2);
    for entry in &published {
        let key = ring.verifying_key(&entry.kid).unwrap();
        assert_eq!(key.kid(), entry.kid);
        assert_eq!(key.to_paserk(), entry.public);
        let parsed = AsymmetricPublicKey::<V4>::try_from(key.to_paserk()).unwrap();
        assert_eq!(parsed.as_bytes(), key.public_key().as_bytes());
    }
    assert_ne!(
        ring.verifying_key(&published[0].kid).unwrap().to_paserk(),
        ring.verifying_key(&published[1].kid).unwrap().to_paserk()
    );
}

#[test]
fn open_or_init_activates_the_first_key_at_the_current_time() {
    let (_tmp, dir) = keys_dir();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ring = KeyRing::open_or_init(&dir).unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let info = &ring.keys()[0];
    assert_eq!(info.status, KeyStatus::Signing);
    let activated = info
        .activated_at
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((before..=after).contains(&activated), "{activated}");
    assert_eq!(ring.dir(), dir);
}

#[test]
fn key_status_labels_match_the_published_json() {
    for status in [KeyStatus::Signing, KeyStatus::Staged, KeyStatus::Retired] {
        let json = serde_json::to_value(status).unwrap();
        assert_eq!(json, status.as_str());
    }
    assert_eq!(KeyStatus::Staged.as_str(), "staged");
}

/// Runs `f` with every log event captured, and returns the log text.
fn captured_logs(f: impl FnOnce()) -> String {
    let buffer = Logs::default();
    let subscriber = buffer.text_subscriber();
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    buffer.text()
}

#[test]
fn reload_logs_skips_removals_and_an_unreadable_dir_without_key_material() {
    let (_tmp, dir) = keys_dir();
    let ring = KeyRing::open_or_init_at(&dir, t0()).unwrap();
    let staged = keyring::generate(&dir, at(1)).unwrap();
    ring.reload();
    let secret = fs::read_to_string(&staged.file).unwrap();
    let junk = dir.join("junk.key");
    let moved = dir.with_file_name("moved");
    let logs = captured_logs(|| {
        fs::write(&junk, "not a key SECRET-CANARY").unwrap();
        fs::remove_file(&staged.file).unwrap();
        ring.reload().log();
        fs::rename(&dir, &moved).unwrap();
        ring.reload().log();
    });
    assert!(logs.contains("key file skipped"), "{logs}");
    assert!(logs.contains(&junk.display().to_string()), "{logs}");
    assert!(logs.contains("not a PASERK k4.secret key"), "{logs}");
    assert!(logs.contains("verification key removed"), "{logs}");
    assert!(logs.contains(&staged.kid), "{logs}");
    assert!(
        logs.contains("keys directory unreadable; keeping the loaded keys"),
        "{logs}"
    );
    assert!(logs.contains(&dir.display().to_string()), "{logs}");
    assert!(!logs.contains("SECRET-CANARY"), "{logs}");
    assert!(!logs.contains(secret.trim()), "{logs}");
    assert!(ring.signer().is_ok(), "the unreadable dir kept the signer");
}

#[test]
fn list_returns_the_usable_keys_and_logs_the_skipped_files() {
    let (_tmp, dir) = keys_dir();
    let signer = keyring::generate(&dir, t0()).unwrap();
    let junk = dir.join("junk.key");
    fs::write(&junk, "k4.secret.SECRET-CANARY").unwrap();
    let mut listed = Vec::new();
    let logs = captured_logs(|| listed = keyring::list(&dir).unwrap());
    assert_eq!(listed, [signer]);
    assert!(logs.contains("key file skipped"), "{logs}");
    assert!(logs.contains(&junk.display().to_string()), "{logs}");
    assert!(
        logs.contains("invalid k4.secret key (encoding, length or public half)"),
        "{logs}"
    );
    assert!(!logs.contains("SECRET-CANARY"), "{logs}");
}

#[tokio::test]
async fn watcher_reloads_only_when_the_directory_fingerprint_changes() {
    let (_tmp, dir) = keys_dir();
    let ring = Arc::new(KeyRing::open_or_init_at(&dir, t0()).unwrap());
    let staged = keyring::generate(&dir, at(1)).unwrap();
    ring.reload();
    let (_other_tmp, other_dir) = keys_dir();
    let other = keyring::generate(&other_dir, t0()).unwrap();
    // Same name, size, inode and mtime, new content: the fingerprint cannot
    // tell, so polls leave the loaded key in place.
    let mtime = fs::metadata(&staged.file).unwrap().modified().unwrap();
    fs::write(&staged.file, fs::read(&other.file).unwrap()).unwrap();
    let file = fs::File::options().write(true).open(&staged.file).unwrap();
    file.set_modified(mtime).unwrap();
    let watcher = Arc::clone(&ring).spawn_watcher(Duration::from_millis(10));
    // About five polls; a watcher that reloaded on every poll would have
    // swapped the key by now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(ring.verifying_key(&staged.kid).is_some());
    assert!(ring.verifying_key(&other.kid).is_none());
    // A new mtime is a change: a poll reloads.
    file.set_modified(at(3_600)).unwrap();
    assert!(
        common::eventually(Duration::from_secs(5), || ring
            .verifying_key(&other.kid)
            .is_some())
        .await,
        "watcher never reloaded"
    );
    assert!(ring.verifying_key(&staged.kid).is_none());
    drop(ring);
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
}
