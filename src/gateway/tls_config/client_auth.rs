//! Optional mutual TLS: the client-certificate verifier built from `[tls]`.
//!
//! - `client_auth = "off"`: no certificate is requested.
//! - `client_ca_path`: client certificates must chain to that CA bundle
//!   (rustls' `WebPkiClientVerifier`: path, validity, key usage).
//! - `client_cert_fingerprints`: only certificates whose SHA-256 is listed are
//!   accepted. With a CA as well, both checks must pass; without one, a listed
//!   (typically self-signed) certificate is accepted inside its validity period.
//! - `"optional"`: a client without a certificate is admitted, but a
//!   certificate that is sent is checked in full and refused when bad.
//!
//! In every mode the TLS 1.3 CertificateVerify signature is checked, so a
//! client must hold the private key of the certificate it presents.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{ClientAuth, TlsConfig, normalize_fingerprint};
use crate::gateway::certificate_manager::fingerprint_hex;
use crate::gateway::tls_config;

/// Why the client-certificate policy could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// The CA bundle named by `client_ca_path` could not be read.
    #[error("[tls] client_ca_path: cannot read {}: {source}", path.display())]
    CaUnreadable {
        /// The bundle.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA bundle is not valid PEM.
    #[error("[tls] client_ca_path: {} is not a PEM certificate bundle: {detail}", path.display())]
    CaNotPem {
        /// The bundle.
        path: PathBuf,
        /// What the PEM parser reported.
        detail: String,
    },
    /// The CA bundle holds no certificate.
    #[error("[tls] client_ca_path: {} holds no CERTIFICATE block", path.display())]
    CaEmpty {
        /// The bundle.
        path: PathBuf,
    },
    /// A certificate in the bundle cannot serve as a trust anchor.
    #[error("[tls] client_ca_path: certificate #{index} in {} is not a usable CA: {source}", path.display())]
    CaRejected {
        /// The bundle.
        path: PathBuf,
        /// Position of the certificate in the bundle, from 1.
        index: usize,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// An entry of `client_cert_fingerprints` is not a SHA-256 fingerprint.
    #[error(
        "[tls] client_cert_fingerprints: {value:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
    )]
    BadFingerprint {
        /// The entry as configured (a public value).
        value: String,
    },
    /// Client certificates are requested but nothing says which to trust.
    #[error("[tls] client_auth needs client_ca_path or client_cert_fingerprints")]
    NoTrust,
    /// rustls could not build the chain verifier.
    #[error("[tls] client_ca_path: cannot build the client verifier: {0}")]
    Verifier(#[source] VerifierBuilderError),
}

/// Builds the client-certificate verifier for `tls`, or `None` when
/// `client_auth = "off"`.
pub fn client_verifier(
    tls: &TlsConfig,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ClientAuthError> {
    let mandatory = match tls.client_auth {
        ClientAuth::Off => return Ok(None),
        ClientAuth::Optional => false,
        ClientAuth::Required => true,
    };
    let provider = Arc::new(tls_config::provider());
    let chain = tls
        .client_ca_path
        .as_deref()
        .map(|path| chain_verifier(path, mandatory, &provider))
        .transpose()?;
    let pins = parse_pins(&tls.client_cert_fingerprints)?;
    match (chain, pins.is_empty()) {
        (None, true) => Err(ClientAuthError::NoTrust),
        (Some(chain), true) => Ok(Some(chain)),
        (chain, false) => Ok(Some(Arc::new(PinnedClientVerifier {
            pins,
            chain,
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        }))),
    }
}

/// Reads a PEM CA bundle into a root store, refusing an empty bundle and
/// any certificate that cannot be a trust anchor (nothing is skipped silently).
pub fn load_client_roots(path: &Path) -> Result<RootCertStore, ClientAuthError> {
    let pem = std::fs::read(path).map_err(|source| ClientAuthError::CaUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientAuthError::CaNotPem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientAuthError::CaEmpty {
            path: path.to_path_buf(),
        });
    }
    let mut roots = RootCertStore::empty();
    for (i, der) in certs.into_iter().enumerate() {
        roots
            .add(der)
            .map_err(|source| ClientAuthError::CaRejected {
                path: path.to_path_buf(),
                index: i + 1,
                source,
            })?;
    }
    Ok(roots)
}

fn chain_verifier(
    path: &Path,
    mandatory: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ClientAuthError> {
    let roots = Arc::new(load_client_roots(path)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider));
    let builder = if mandatory {
        builder
    } else {
        // Optional: no certificate is fine, but a presented one is still
        // verified in full and refused when bad.
        builder.allow_unauthenticated()
    };
    builder.build().map_err(ClientAuthError::Verifier)
}

fn parse_pins(fingerprints: &[String]) -> Result<HashSet<String>, ClientAuthError> {
    fingerprints
        .iter()
        .map(|fp| {
            normalize_fingerprint(fp)
                .ok_or_else(|| ClientAuthError::BadFingerprint { value: fp.clone() })
        })
        .collect()
}

/// Accepts only certificates whose SHA-256 is pinned, after the optional
/// chain verifier has accepted them too.
#[derive(Debug)]
struct PinnedClientVerifier {
    /// Lower-case hex SHA-256 fingerprints.
    pins: HashSet<String>,
    /// The CA verifier, when `client_ca_path` is set: it must pass as well.
    chain: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints without a CA: the client then offers whatever it has.
        self.chain.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Both must pass: the chain (when configured) and the pin.
        match &self.chain {
            Some(chain) => {
                chain.verify_client_cert(end_entity, intermediates, now)?;
            }
            None => check_validity(end_entity, now)?,
        }
        // Not constant-time, on purpose: the fingerprint is of a public
        // certificate the client just sent in clear, and the pins are no secret.
        if self.pins.contains(&fingerprint_hex(end_entity)) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(CertificateError::ApplicationVerificationFailure.into())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable under the TLS 1.3-only policy; checked properly anyway.
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Proof of possession: a pinned certificate is public, its key is not.
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Without a CA, a pinned certificate is still only good inside its
/// validity period.
fn check_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CertificateError::BadEncoding)?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < cert.validity().not_before.timestamp() {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > cert.validity().not_after.timestamp() {
        return Err(CertificateError::Expired.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
