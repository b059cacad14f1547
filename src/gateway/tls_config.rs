//! The TLS policy, as a few statics, and the rustls `ServerConfig` built
//! from them.
//!
//! - TLS 1.3 only: no fallback to 1.2 (RFC 8446).
//! - Exactly two cipher suites, TLS13_AES_256_GCM_SHA384 and
//!   TLS13_CHACHA20_POLY1305_SHA256. TLS13_AES_128_GCM_SHA256 is mandatory
//!   to *implement* (RFC 8446 §9.1) but excluded here by policy, so a client
//!   offering only that suite fails the handshake; [`describe_handshake_error`]
//!   says so in plain words for the operator.
//! - Forward secrecy by construction: every TLS 1.3 key exchange is
//!   ephemeral (EC)DHE, and rustls resumes TLS 1.3 sessions only in
//!   `psk_dhe_ke` mode.
//! - No 0-RTT: `max_early_data_size` stays 0, because early data can be
//!   replayed below the HTTP layer (PITFALLS C9).
//! - ALPN h2 then http/1.1.
//!
//! Tests pin these lists and compare them with the provider's defaults so a
//! rustls upgrade cannot silently widen the policy.

pub mod client_auth;

use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::server::ResolvesServerCert;
use rustls::server::danger::ClientCertVerifier;
use rustls::{PeerIncompatible, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

/// Protocol versions offered: TLS 1.3 only.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The only cipher suites accepted, in server preference order.
pub static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// Key-exchange groups, all ephemeral: X25519, then P-256 and P-384.
pub static KX_GROUPS: &[&dyn SupportedKxGroup] =
    &[kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];

/// ALPN protocols, in preference order.
pub static ALPN_PROTOCOLS: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Why a `ServerConfig` could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// rustls rejected the protocol versions for this provider.
    #[error("TLS policy rejected by rustls: {0}")]
    Policy(#[source] rustls::Error),
}

/// The ring provider restricted to [`CIPHER_SUITES`] and [`KX_GROUPS`].
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        kx_groups: KX_GROUPS.to_vec(),
        ..default_provider()
    }
}

/// Builds the server configuration around a certificate resolver (which can
/// swap certificates while running) and an optional client-certificate
/// verifier (mutual TLS).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, TlsConfigError> {
    let builder = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsConfigError::Policy)?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // Early data can be replayed by an attacker below HTTP: never accept it.
    config.max_early_data_size = 0;
    config.ignore_client_order = true;
    Ok(config)
}

/// A stable label and an operator-facing explanation of a failed handshake.
///
/// The label feeds metrics and logs (`tls.result`); the explanation is for
/// the operator's log only. The client gets nothing but the TLS alert.
pub fn describe_handshake_error(err: &rustls::Error) -> (&'static str, &'static str) {
    match err {
        rustls::Error::PeerIncompatible(why) => describe_incompatible(why),
        rustls::Error::NoCertificatesPresented => (
            "client_cert_missing",
            "the client presented no certificate but mutual TLS requires one",
        ),
        rustls::Error::InvalidCertificate(_) => (
            "client_cert_rejected",
            "the client certificate is not trusted (unknown issuer, expired, or not an allowed fingerprint)",
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => (
            "protocol_error",
            "the client sent a malformed or out-of-order TLS message (not a TLS 1.3 client, or a scanner)",
        ),
        rustls::Error::AlertReceived(_) => (
            "client_alert",
            "the client aborted the handshake (usually: it does not trust the gateway certificate; install ca.crt)",
        ),
        _ => ("handshake_failed", "the TLS handshake failed"),
    }
}

fn describe_incompatible(why: &PeerIncompatible) -> (&'static str, &'static str) {
    match why {
        PeerIncompatible::SupportedVersionsExtensionRequired
        | PeerIncompatible::Tls12NotOffered
        | PeerIncompatible::Tls12NotOfferedOrEnabled
        | PeerIncompatible::ServerDoesNotSupportTls12Or13 => (
            "protocol_version",
            "the client does not offer TLS 1.3; clawgate accepts TLS 1.3 only (no fallback to TLS 1.2)",
        ),
        PeerIncompatible::NoCipherSuitesInCommon => (
            "no_cipher_suite",
            "the client offered no accepted cipher suite; clawgate accepts only TLS13_AES_256_GCM_SHA384 and \
             TLS13_CHACHA20_POLY1305_SHA256 (TLS13_AES_128_GCM_SHA256 is excluded on purpose)",
        ),
        PeerIncompatible::NoKxGroupsInCommon | PeerIncompatible::KeyShareExtensionRequired => (
            "no_kx_group",
            "the client offered no accepted key-exchange group (X25519, P-256, P-384)",
        ),
        PeerIncompatible::NoSignatureSchemesInCommon
        | PeerIncompatible::SignatureAlgorithmsExtensionRequired => (
            "no_signature_scheme",
            "the client supports no signature scheme usable with the gateway certificate",
        ),
        _ => (
            "incompatible_client",
            "the client's TLS settings are incompatible with the TLS 1.3 policy",
        ),
    }
}

#[cfg(test)]
mod tests {
    use rustls::CipherSuite;

    use super::*;

    #[test]
    fn policy_is_exactly_two_tls13_suites() {
        let suites: Vec<CipherSuite> = CIPHER_SUITES.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites,
            [
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        assert!(CIPHER_SUITES.iter().all(|s| s.tls13().is_some()));
    }

    #[test]
    fn provider_defaults_are_narrowed_not_widened() {
        let defaults = default_provider();
        // The ring default includes AES-128-GCM and TLS 1.2 suites: the policy must drop them.
        assert!(defaults.cipher_suites.len() > CIPHER_SUITES.len());
        let ours = provider();
        assert_eq!(ours.cipher_suites.len(), 2);
        assert!(
            ours.cipher_suites
                .iter()
                .all(|s| s.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let groups: Vec<_> = ours.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups.len(), 3, "{groups:?}");
    }

    #[test]
    fn only_tls13_is_enabled() {
        assert_eq!(PROTOCOL_VERSIONS.len(), 1);
        assert_eq!(
            PROTOCOL_VERSIONS[0].version,
            rustls::ProtocolVersion::TLSv1_3
        );
    }

    #[test]
    fn alpn_is_h2_then_http11() {
        assert_eq!(ALPN_PROTOCOLS, &[b"h2".as_slice(), b"http/1.1".as_slice()]);
    }

    #[test]
    fn every_failure_class_gets_its_own_label() {
        use rustls::{AlertDescription, CertificateError, InvalidMessage, PeerMisbehaved};
        let cases: Vec<(rustls::Error, &str)> = vec![
            (PeerIncompatible::Tls12NotOffered.into(), "protocol_version"),
            (PeerIncompatible::NoKxGroupsInCommon.into(), "no_kx_group"),
            (
                PeerIncompatible::NoSignatureSchemesInCommon.into(),
                "no_signature_scheme",
            ),
            (
                PeerIncompatible::NullCompressionRequired.into(),
                "incompatible_client",
            ),
            (
                rustls::Error::NoCertificatesPresented,
                "client_cert_missing",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "client_cert_rejected",
            ),
            (
                rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
                "protocol_error",
            ),
            (
                rustls::Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
                "protocol_error",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::BadCertificate),
                "client_alert",
            ),
            (rustls::Error::HandshakeNotComplete, "handshake_failed"),
        ];
        for (error, label) in cases {
            let (got, why) = describe_handshake_error(&error);
            assert_eq!(got, label, "{error:?}");
            assert!(why.len() > 20, "explanation too thin for {error:?}");
        }
    }

    #[test]
    fn errors_are_explained_in_plain_words() {
        let (label, why) =
            describe_handshake_error(&PeerIncompatible::NoCipherSuitesInCommon.into());
        assert_eq!(label, "no_cipher_suite");
        assert!(why.contains("TLS13_AES_128_GCM_SHA256 is excluded"));
        let (label, _) =
            describe_handshake_error(&PeerIncompatible::SupportedVersionsExtensionRequired.into());
        assert_eq!(label, "protocol_version");
    }
}
