use std::time::{Duration, SystemTime};

use super::*;
use crate::config::KeyAlgorithm;
use crate::gateway::certificate_manager::generate_root;

const PIN: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

fn tls(client_auth: ClientAuth) -> TlsConfig {
    TlsConfig {
        client_auth,
        ..TlsConfig::default()
    }
}

fn write_ca(dir: &Path) -> PathBuf {
    let root = generate_root(
        KeyAlgorithm::EcdsaP256,
        Duration::from_secs(86_400),
        SystemTime::now(),
    )
    .unwrap();
    let path = dir.join("clients-ca.pem");
    std::fs::write(&path, root.cert_pem).unwrap();
    path
}

#[test]
fn off_builds_no_verifier_even_with_trust_configured() {
    let config = TlsConfig {
        client_cert_fingerprints: vec![PIN.to_owned()],
        ..tls(ClientAuth::Off)
    };
    assert!(client_verifier(&config).unwrap().is_none());
}

#[test]
fn client_auth_without_trust_is_an_error() {
    let err = client_verifier(&tls(ClientAuth::Required)).err().unwrap();
    assert!(matches!(err, ClientAuthError::NoTrust), "{err}");
    assert!(err.to_string().contains("client_ca_path"), "{err}");
}

#[test]
fn malformed_fingerprint_is_named_in_the_error() {
    let config = TlsConfig {
        client_cert_fingerprints: vec!["abc123".to_owned()],
        ..tls(ClientAuth::Required)
    };
    let err = client_verifier(&config).err().unwrap();
    assert!(
        matches!(&err, ClientAuthError::BadFingerprint { value } if value == "abc123"),
        "{err}"
    );
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

#[test]
fn missing_ca_file_is_an_unreadable_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.pem");
    let config = TlsConfig {
        client_ca_path: Some(path.clone()),
        ..tls(ClientAuth::Required)
    };
    let err = client_verifier(&config).err().unwrap();
    assert!(matches!(err, ClientAuthError::CaUnreadable { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn empty_and_broken_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let err = load_client_roots(&empty).unwrap_err();
    assert!(matches!(err, ClientAuthError::CaEmpty { .. }), "{err}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_client_roots(&junk).unwrap_err();
    assert!(
        matches!(err, ClientAuthError::CaRejected { index: 1, .. }),
        "{err}"
    );

    let bad_base64 = dir.path().join("bad.pem");
    std::fs::write(
        &bad_base64,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_client_roots(&bad_base64).unwrap_err();
    assert!(matches!(err, ClientAuthError::CaNotPem { .. }), "{err}");
}

#[test]
fn required_and_optional_set_whether_a_certificate_is_mandatory() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path());
    for (mode, mandatory) in [(ClientAuth::Required, true), (ClientAuth::Optional, false)] {
        for pins in [vec![], vec![PIN.to_owned()]] {
            let config = TlsConfig {
                client_ca_path: Some(ca.clone()),
                client_cert_fingerprints: pins.clone(),
                ..tls(mode)
            };
            let verifier = client_verifier(&config).unwrap().unwrap();
            assert!(verifier.offer_client_auth());
            assert_eq!(
                verifier.client_auth_mandatory(),
                mandatory,
                "{mode:?} with {} pins",
                pins.len()
            );
            // The CA's subject is hinted to clients in both shapes.
            assert_eq!(verifier.root_hint_subjects().len(), 1);
        }
    }
}

#[test]
fn pins_alone_hint_no_subjects_and_accept_colon_form() {
    let config = TlsConfig {
        client_cert_fingerprints: vec![PIN.to_owned(), PIN.to_lowercase().replace(':', "")],
        ..tls(ClientAuth::Optional)
    };
    let verifier = client_verifier(&config).unwrap().unwrap();
    assert!(verifier.root_hint_subjects().is_empty());
    assert!(!verifier.client_auth_mandatory());
}
