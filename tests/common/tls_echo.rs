//! A bare TLS server on 127.0.0.1:0 built from clawgate's own pieces
//! (CertificateManager resolver + tls_config::server_config + an optional
//! client verifier) answering "ping" with "pong", and the client side: rcgen
//! client PKI and rustls clients with or without a client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawgate::gateway::certificate_manager::{CertificateManager, fingerprint, fingerprint_hex};
use clawgate::gateway::tls_config::{self, describe_handshake_error};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::ResolvesClientCert;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server saw of one connection: the client certificate's SHA-256
/// (lower-case hex) when the handshake completed, or the handshake failure label.
pub type Seen = Result<Option<String>, &'static str>;

/// A running echo server.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Serves `manager`'s certificate with `verifier` (None: no client auth).
    pub async fn start(
        manager: &CertificateManager,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Self {
        let config = tls_config::server_config(manager.resolver(), verifier).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log) = (acceptor.clone(), Arc::clone(&log));
                tokio::spawn(async move { serve_one(acceptor, tcp, log).await });
            }
        });
        Self { addr, seen, task }
    }

    /// Waits until the server recorded `n` connections, then returns the last.
    pub async fn last_seen(&self, n: usize) -> Seen {
        let mut last = None;
        super::eventually(Duration::from_secs(5), || {
            last = self.seen.lock().unwrap().get(n - 1).cloned();
            last.is_some()
        })
        .await;
        last.unwrap_or_else(|| panic!("server recorded fewer than {n} connections"))
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(acceptor: TlsAcceptor, tcp: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    match acceptor.accept(tcp).await {
        Ok(mut tls) => {
            let fp = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| fingerprint_hex(c));
            log.lock().unwrap().push(Ok(fp));
            let mut ping = [0u8; 4];
            if tls.read_exact(&mut ping).await.is_ok() && &ping == b"ping" {
                let _ = tls.write_all(b"pong").await;
                let _ = tls.shutdown().await;
            }
        }
        Err(error) => {
            let label = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .map_or("io_error", |e| describe_handshake_error(e).0);
            log.lock().unwrap().push(Err(label));
        }
    }
}

/// A client certificate chain (leaf first) and its key.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl ClientIdentity {
    /// SHA-256 of the leaf, lower-case hex.
    pub fn fingerprint(&self) -> String {
        fingerprint_hex(&self.chain[0])
    }
}

/// A CA that issues client certificates.
pub struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl ClientCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// Writes the CA certificate as a PEM bundle at `path`.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).unwrap();
    }

    /// Issues a client certificate (clientAuth) for `name`.
    pub fn issue(&self, name: &str) -> ClientIdentity {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = client_params(name).signed_by(&key, &self.issuer).unwrap();
        ClientIdentity {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

/// A self-signed client certificate (for fingerprint pinning).
pub fn self_signed_client(name: &str) -> ClientIdentity {
    self_signed_client_until(
        name,
        time::OffsetDateTime::now_utc() + time::Duration::days(1),
    )
}

/// A self-signed client certificate whose validity ends at `not_after`.
pub fn self_signed_client_until(name: &str, not_after: time::OffsetDateTime) -> ClientIdentity {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = client_params(name);
    params.not_before = not_after - time::Duration::days(2);
    params.not_after = not_after;
    let cert = params.self_signed(&key).unwrap();
    ClientIdentity {
        chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

fn client_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
    params
}

/// A TLS 1.3 client trusting the PEM roots in `ca`, presenting `identity`.
pub fn client(ca: &Path, identity: Option<&ClientIdentity>) -> Arc<ClientConfig> {
    let builder = super::client_builder(ca, None, &[&rustls::version::TLS13]);
    let config = match identity {
        // A resolver instead of `with_client_auth_cert`, which refuses a key
        // that does not match: tests need to present such a pair.
        Some(id) => {
            builder.with_client_cert_resolver(Arc::new(FixedIdentity(Arc::new(CertifiedKey::new(
                id.chain.clone(),
                any_supported_type(&PrivateKeyDer::Pkcs8(id.key.clone_key())).unwrap(),
            )))))
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Presents one certificate and key, unchecked.
#[derive(Debug)]
struct FixedIdentity(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Handshake, send "ping", expect "pong". In TLS 1.3 the server judges the
/// client certificate after the client's handshake is done, so a refusal
/// shows up on the first read.
pub async fn exchange(config: &Arc<ClientConfig>, addr: SocketAddr) -> std::io::Result<()> {
    let mut tls = connect(config, addr).await?;
    tls.write_all(b"ping").await?;
    tls.flush().await?;
    let mut pong = [0u8; 4];
    tls.read_exact(&mut pong).await?;
    if &pong == b"pong" {
        Ok(())
    } else {
        Err(std::io::Error::other("unexpected reply"))
    }
}

/// TCP connect + TLS handshake to `localhost`.
pub async fn connect(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::clone(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The SHA-256 of the certificate the server presents, in the form of
/// `CertInfo::fingerprint_sha256` (upper-case hex with colons).
pub async fn served_fingerprint(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<String> {
    let tls = connect(config, addr).await?;
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    certs
        .first()
        .map(|c| fingerprint(c))
        .ok_or_else(|| std::io::Error::other("no server certificate"))
}
