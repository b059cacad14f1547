#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use super::*;

#[test]
fn file_names_map_to_roles() {
    assert_eq!(
        role_of("1700000000-abc.key"),
        Some(Role::Activated(1_700_000_000))
    );
    assert_eq!(role_of("0-x.key"), Some(Role::Activated(0)));
    assert_eq!(
        role_of("1700000000--dash.key"),
        Some(Role::Activated(1_700_000_000))
    );
    assert_eq!(role_of("next-abc.key"), Some(Role::Staged));
    assert_eq!(role_of("next-.key"), Some(Role::Unmanaged));
    assert_eq!(role_of("partner.key"), Some(Role::Unmanaged));
    assert_eq!(role_of("17x-abc.key"), Some(Role::Unmanaged));
    assert_eq!(role_of("-abc.key"), Some(Role::Unmanaged));
    assert_eq!(role_of("1700000000-.key"), Some(Role::Unmanaged));
    // Too large for SystemTime / u64: not an activation time.
    assert_eq!(role_of("99999999999999999999-a.key"), Some(Role::Unmanaged));
    assert_eq!(role_of("README.md"), None);
    assert_eq!(role_of(".hidden.key"), None);
    assert_eq!(role_of("1700000000-abc.key.tmp.42"), None);
}

#[test]
fn key_file_content_is_parsed_strictly() {
    let pair = AsymmetricKeyPair::<V4>::generate().unwrap();
    let mut line = String::new();
    FormatAsPaserk::fmt(&pair.secret, &mut line).unwrap();
    assert!(parse_secret(line.as_bytes()).is_ok());
    assert!(parse_secret(format!("  {line}\r\n").as_bytes()).is_ok());
    let rejects: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty"),
        (b"\n\n".to_vec(), "empty"),
        (format!("{line}\n{line}").into_bytes(), "more than one line"),
        (vec![0xff, 0xfe], "not UTF-8 text"),
        (
            b"k4.public.AAAA".to_vec(),
            "holds a k4.public key; a key file holds a k4.secret key",
        ),
        (
            line.replace("k4.", "k3.").into_bytes(),
            "not a PASERK k4.secret key",
        ),
        (
            line.as_bytes()[..line.len() - 2].to_vec(),
            "invalid k4.secret key (encoding, length or public half)",
        ),
        (vec![b'k'; 2000], "too large for a key file"),
    ];
    for (content, want) in rejects {
        let got = parse_secret(&content).err();
        assert_eq!(got, Some(want));
    }
}

#[test]
fn secret_with_mismatched_public_half_is_rejected() {
    let a = AsymmetricKeyPair::<V4>::generate().unwrap();
    let b = AsymmetricKeyPair::<V4>::generate().unwrap();
    let mut bytes = a.secret.as_bytes().to_vec();
    bytes[32..].copy_from_slice(b.public.as_bytes());
    use base64::Engine;
    let forged = format!(
        "k4.secret.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
    );
    assert!(parse_secret(forged.as_bytes()).is_err());
}

#[test]
fn promotion_keeps_the_name_after_the_prefix() {
    assert_eq!(promoted_name("next-abc.key", 42), "42-abc.key");
    assert_eq!(
        role_of(&promoted_name("next--x.key", 7)),
        Some(Role::Activated(7))
    );
}

#[test]
fn create_refuses_to_overwrite_an_existing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kid = create(dir, |_| "fixed.key".to_owned()).unwrap();
    let path = dir.join("fixed.key");
    let before = fs::read(&path).unwrap();
    let (material, _) = load(&path).unwrap();
    assert_eq!(material.public.kid, kid);

    let err = create(dir, |_| "fixed.key".to_owned()).unwrap_err();
    match err {
        KeyError::Io { path: at, source } => {
            assert_eq!(at, path);
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before, "the first key is intact");
}

#[test]
fn only_regular_files_of_bounded_size_are_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    create(dir, |_| "good.key".to_owned()).unwrap();
    let good = fs::read_to_string(dir.join("good.key")).unwrap();
    fs::create_dir(dir.join("dir.key")).unwrap();
    // A valid key padded past the size cap: refused before it is read.
    let padded = format!("{}{good}", " ".repeat(2_000));
    fs::write(dir.join("big.key"), padded).unwrap();
    assert_eq!(load(&dir.join("dir.key")).err(), Some("not a regular file"));
    assert_eq!(load(&dir.join("big.key")).err(), Some(TOO_LARGE));
    assert_eq!(load(&dir.join("missing.key")).err(), Some("cannot be read"));
    assert!(load(&dir.join("good.key")).is_ok());
}
