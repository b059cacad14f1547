#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use super::*;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn promote_refuses_to_overwrite_an_existing_key_file() {
    // `rotate` picks an activation time after every existing one, so only a
    // concurrent writer could create the target; the guard keeps both keys.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let signer = generate(dir, at(T0)).unwrap();
    let staged = generate(dir, at(T0 + 1)).unwrap();
    assert_eq!(signer.status, KeyStatus::Signing);
    assert_eq!(staged.status, KeyStatus::Staged);
    let name = staged.file.file_name().unwrap().to_str().unwrap();
    let target = dir.join(key_file::promoted_name(name, T0 + 5));
    fs::write(&target, "occupied").unwrap();

    let err = promote(dir, &staged.file, T0 + 5).unwrap_err();
    match err {
        KeyError::Io { path, source } => {
            assert_eq!(path, target);
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert_eq!(fs::read_to_string(&target).unwrap(), "occupied");
    assert!(staged.file.exists(), "the staged key stays where it was");
}

#[test]
fn a_new_key_that_cannot_be_read_back_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let signer = generate(dir, at(T0)).unwrap();
    assert_eq!(info_of(dir, &signer.kid).unwrap(), signer);
    let err = info_of(dir, "k4.pid.not-in-this-directory").unwrap_err();
    match err {
        KeyError::BadKeyFile { path, reason } => {
            assert_eq!(path, dir);
            assert_eq!(reason, "the new key could not be read back");
        }
        other => panic!("unexpected error: {other:?}"),
    }
}
