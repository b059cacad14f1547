use std::time::{Duration, SystemTime};

use rustls::pki_types::PrivateKeyDer;

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

/// A self-signed client certificate valid from `not_before` for two days,
/// with its key.
fn self_signed_client(not_before: SystemTime) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "device");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_before + Duration::from_secs(2 * 86_400));
    let cert = params.self_signed(&key).unwrap();
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (cert.der().clone(), key)
}

fn pinned_verifier(cert: &CertificateDer<'_>) -> Arc<dyn ClientCertVerifier> {
    let config = TlsConfig {
        client_cert_fingerprints: vec![fingerprint_hex(cert)],
        ..tls(ClientAuth::Required)
    };
    client_verifier(&config).unwrap().unwrap()
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap())
}

#[test]
fn pinned_certificate_is_refused_before_its_validity_starts() {
    let start = SystemTime::now() + Duration::from_secs(86_400);
    let (cert, _) = self_signed_client(start);
    let verifier = pinned_verifier(&cert);
    let early = verifier
        .verify_client_cert(&cert, &[], unix(start - Duration::from_secs(60)))
        .unwrap_err();
    assert_eq!(
        early,
        rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
    );
    let after_the_end = verifier
        .verify_client_cert(&cert, &[], unix(start + Duration::from_secs(3 * 86_400)))
        .unwrap_err();
    assert_eq!(
        after_the_end,
        rustls::Error::InvalidCertificate(CertificateError::Expired)
    );
    verifier
        .verify_client_cert(&cert, &[], unix(start + Duration::from_secs(60)))
        .expect("inside its validity the pinned certificate is accepted");
}

#[test]
fn pinned_verifier_checks_the_tls12_certificate_verify_signature_too() {
    // The gateway speaks TLS 1.3 only; this drives the verifier through a
    // real rustls TLS 1.2 handshake to prove the 1.2 path is no rubber stamp.
    let (cert, key) = self_signed_client(SystemTime::now() - Duration::from_secs(3600));
    let (_, other_key) = self_signed_client(SystemTime::now() - Duration::from_secs(3600));
    let server = tls12::server(pinned_verifier(&cert));

    let holder = tls12::handshake(&server, &tls12::client(&server, cert.clone(), &key));
    assert_eq!(holder, Ok(()), "the key holder is admitted");

    let impostor = tls12::handshake(&server, &tls12::client(&server, cert, &other_key));
    assert_eq!(
        impostor,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
        )),
        "a pinned certificate presented without its key is refused"
    );
}

/// In-memory TLS 1.2 handshakes between real rustls endpoints.
mod tls12 {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use rustls::client::ResolvesClientCert;
    use rustls::crypto::ring::{default_provider, sign::any_supported_type};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::server::danger::ClientCertVerifier;
    use rustls::sign::CertifiedKey;
    use rustls::{
        ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, ServerConfig,
        ServerConnection, SignatureScheme,
    };
    use rustls_pki_types::pem::PemObject;

    use crate::config::KeyAlgorithm;
    use crate::gateway::certificate_manager::{generate_root, issue_server_cert, parse_chain};

    /// A TLS 1.2-only server with `verifier`, plus the root its certificate
    /// chains to.
    pub(super) struct Server {
        config: Arc<ServerConfig>,
        root: CertificateDer<'static>,
    }

    pub(super) fn server(verifier: Arc<dyn ClientCertVerifier>) -> Server {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let root = generate_root(KeyAlgorithm::EcdsaP256, 2 * day, now).unwrap();
        let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, day, now).unwrap();
        let chain = parse_chain(leaf.cert_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        Server {
            config: Arc::new(config),
            root: parse_chain(root.cert_pem.as_bytes()).unwrap().remove(0),
        }
    }

    /// A TLS 1.2 client presenting `cert` and signing with `key` (which
    /// need not belong to `cert`).
    pub(super) fn client(
        server: &Server,
        cert: CertificateDer<'static>,
        key: &PrivateKeyDer<'static>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(server.root.clone()).unwrap();
        let identity = CertifiedKey::new(vec![cert], any_supported_type(key).unwrap());
        let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(Fixed(Arc::new(identity))));
        Arc::new(config)
    }

    /// Runs a handshake to completion; the first error either side raises.
    pub(super) fn handshake(
        server: &Server,
        client: &Arc<ClientConfig>,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::clone(&server.config)).unwrap();
        for _ in 0..16 {
            if !c.is_handshaking() && !s.is_handshaking() {
                assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_2));
                return Ok(());
            }
            let mut flight = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut flight).unwrap();
            }
            feed(&flight, |r| s.read_tls(r));
            s.process_new_packets()?;
            let mut flight = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut flight).unwrap();
            }
            feed(&flight, |r| c.read_tls(r));
            c.process_new_packets()?;
        }
        panic!("handshake made no progress");
    }

    /// Hands every byte of `bytes` to `read_tls`, which may take them in parts.
    fn feed(mut bytes: &[u8], mut read_tls: impl FnMut(&mut &[u8]) -> std::io::Result<usize>) {
        while !bytes.is_empty() {
            read_tls(&mut bytes).unwrap();
        }
    }

    /// Presents one certificate and key, unchecked.
    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesClientCert for Fixed {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }

        fn has_certs(&self) -> bool {
            true
        }
    }
}
