//! Generating the local root and the server certificates it signs (rcgen).
//!
//! rcgen's default validity is 1975 → 4096, which would make renewal never
//! fire (PITFALLS C3), so every certificate here gets explicit dates. The
//! root is a CA limited to path length 0; the server certificate is a
//! `CA:FALSE` leaf with serverAuth, because webpki clients reject a CA used
//! as an end-entity certificate (PITFALLS C4).
//!
//! Keys are ECDSA: ring cannot generate RSA keys (PITFALLS C5). P-256
//! (128-bit security) exceeds RSA-2048 (112-bit), and P-384 (192-bit)
//! exceeds RSA-4096 (~140-bit), which meets the NFR's intent.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

use super::CertError;
use crate::config::KeyAlgorithm;

/// Names every generated server certificate carries.
pub const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Backdating of `not_before`, so a client whose clock is slightly behind
/// does not see a certificate from the future.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A PEM certificate and its PEM private key.
pub struct PemPair {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM). Never logged.
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair").finish_non_exhaustive()
    }
}

/// Generates a self-signed local root valid from `now` for `validity`.
pub fn generate_root(
    alg: KeyAlgorithm,
    validity: Duration,
    now: SystemTime,
) -> Result<PemPair, CertError> {
    let key = KeyPair::generate_for(signature_algorithm(alg))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("clawgate local root");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, validity, now)?;
    let cert = params.self_signed(&key)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a server certificate for `localhost`, `127.0.0.1`, `::1` and
/// `extra_names`, signed by the root in `root`.
pub fn issue_server_cert(
    root: &PemPair,
    extra_names: &[String],
    alg: KeyAlgorithm,
    validity: Duration,
    now: SystemTime,
) -> Result<PemPair, CertError> {
    let root_key = KeyPair::from_pem(&root.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&root.cert_pem, &root_key)?;
    let key = KeyPair::generate_for(signature_algorithm(alg))?;
    let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect();
    sans.extend(
        extra_names
            .iter()
            .filter(|n| !sans.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name("clawgate gateway");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity, now)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn signature_algorithm(alg: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "clawgate");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(
    params: &mut CertificateParams,
    validity: Duration,
    now: SystemTime,
) -> Result<(), CertError> {
    let start = now.checked_sub(BACKDATE).unwrap_or(now);
    let end = now.checked_add(validity).ok_or(CertError::BadValidity)?;
    params.not_before = time::OffsetDateTime::from(start);
    params.not_after = time::OffsetDateTime::from(end);
    params.serial_number = Some(random_serial()?);
    Ok(())
}

/// A positive 127-bit random serial (RFC 5280 §4.1.2.2: ≤ 20 octets, positive).
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // keep the DER encoding exactly 16 octets
    Ok(SerialNumber::from_slice(&bytes))
}
