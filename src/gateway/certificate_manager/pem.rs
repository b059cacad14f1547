//! Loading and checking PEM certificate chains and keys, and the SHA-256
//! fingerprint and SPKI pin of a certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ring::digest::{SHA256, digest};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::CertError;
use crate::clock::rfc3339;
use crate::gateway::tls_config;

/// Smallest RSA modulus accepted (NFR: "2048 bits minimum").
pub const MIN_RSA_BITS: usize = 2048;

/// What the operator needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS names and IP addresses in subjectAltName.
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// SHA-256 of the DER certificate, upper-case hex with colons
    /// (the form `openssl x509 -fingerprint -sha256` prints).
    pub fingerprint_sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo in the form curl's
    /// `--pinnedpubkey` accepts: `sha256//<base64>`.
    pub spki_pin: String,
    /// Whether the certificate is a CA.
    pub is_ca: bool,
}

impl CertInfo {
    /// Time left before expiry at `now` (zero once expired).
    pub fn remaining_at(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// A checked certificate chain with its key, ready to serve.
#[derive(Clone)]
pub struct LoadedCert {
    /// The chain and signing key handed to rustls.
    pub certified: Arc<CertifiedKey>,
    /// Facts about the end-entity certificate.
    pub info: CertInfo,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key must never be formatted.
        f.debug_struct("LoadedCert")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Reads a certificate chain and key from files, then [`load_pem`].
pub fn load_files(
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<LoadedCert, CertError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    load_pem(&cert_pem, &key_pem, now).map_err(|e| e.at_paths(cert_path, key_path))
}

/// Parses and checks a PEM chain (end-entity first) and its private key
/// (PKCS#8, SEC1 or PKCS#1).
///
/// Everything is checked before the result can be served: the chain parses,
/// the leaf is inside its validity period at `now`, an RSA key has at least
/// [`MIN_RSA_BITS`], and the private key matches the leaf's public key.
pub fn load_pem(cert_pem: &[u8], key_pem: &[u8], now: SystemTime) -> Result<LoadedCert, CertError> {
    let chain = parse_chain(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| CertError::NoPrivateKey { path: None })?;
    let leaf = chain
        .first()
        .ok_or(CertError::NoCertificate { path: None })?;
    let info = inspect(leaf)?;
    check_rsa_size(leaf)?;
    if info.not_after < now {
        return Err(CertError::Expired {
            not_after: rfc3339(info.not_after),
        });
    }
    if info.not_before > now {
        return Err(CertError::NotYetValid {
            not_before: rfc3339(info.not_before),
        });
    }
    let certified =
        CertifiedKey::from_der(chain, key, &tls_config::provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch,
            other => CertError::UnsupportedKey(other.to_string()),
        })?;
    Ok(LoadedCert {
        certified: Arc::new(certified),
        info,
    })
}

/// Parses every `CERTIFICATE` block of a PEM file, in order.
pub fn parse_chain(cert_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadPem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: None });
    }
    Ok(chain)
}

/// Reads subject, SANs, validity, fingerprint and pin of a DER certificate.
pub fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::BadPem(e.to_string()))?;
    let sans = cert
        .extensions()
        .iter()
        .filter_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        })
        .flatten()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(ip) => ip_to_string(ip),
            _ => None,
        })
        .collect();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: unix(cert.validity().not_before.timestamp()),
        not_after: unix(cert.validity().not_after.timestamp()),
        fingerprint_sha256: fingerprint(der),
        spki_pin: spki_pin(cert.public_key().raw),
        is_ca: cert.is_ca(),
    })
}

/// SHA-256 of `der`, upper-case hex with colons.
pub fn fingerprint(der: &[u8]) -> String {
    let hash = digest(&SHA256, der);
    hash.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 of `der`, lower-case hex without separators (for comparisons
/// with configured client-certificate fingerprints).
pub fn fingerprint_hex(der: &[u8]) -> String {
    digest(&SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256//` + base64 of the SHA-256 of a DER SubjectPublicKeyInfo.
pub fn spki_pin(spki_der: &[u8]) -> String {
    let hash = digest(&SHA256, spki_der);
    format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(hash.as_ref())
    )
}

fn check_rsa_size(leaf: &CertificateDer<'_>) -> Result<(), CertError> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| CertError::BadPem(e.to_string()))?;
    if let Ok(PublicKey::RSA(rsa)) = cert.public_key().parsed() {
        let bits = rsa.key_size();
        if bits < MIN_RSA_BITS {
            return Err(CertError::RsaKeyTooSmall { bits });
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn unix(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

fn ip_to_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}
