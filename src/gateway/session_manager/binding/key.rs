//! The client's side: an Ed25519 key and the proofs it signs.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::FormatAsPaserk;
use pasetors::version4::V4;
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use super::proof::{self, WireProof};

/// A client key: the secret never leaves the client; its public half
/// (PASERK `k4.public`) is offered at pairing or login, and its `k4.pid`
/// becomes the session's `cnf.kpid`. `Debug` shows only the `kpid`.
pub struct ClientKey {
    secret: AsymmetricSecretKey<V4>,
    public: String,
    kpid: String,
}

impl ClientKey {
    /// A fresh key from the OS random generator.
    pub fn generate() -> Result<Self, ClientKeyError> {
        let pair = AsymmetricKeyPair::<V4>::generate().map_err(|_| ClientKeyError::Random)?;
        Self::from_parts(pair.secret, &pair.public)
    }

    /// A key from its PASERK `k4.secret.…` form (surrounding whitespace
    /// ignored). pasetors checks that the public half matches the seed.
    pub fn from_paserk(secret: &str) -> Result<Self, ClientKeyError> {
        let secret = AsymmetricSecretKey::<V4>::try_from(secret.trim())
            .map_err(|_| ClientKeyError::InvalidKey)?;
        let public =
            AsymmetricPublicKey::<V4>::try_from(&secret).map_err(|_| ClientKeyError::InvalidKey)?;
        Self::from_parts(secret, &public)
    }

    /// The PASERK `k4.secret.…` form, for the client's own key file.
    pub fn to_paserk(&self) -> Result<Zeroizing<String>, ClientKeyError> {
        let mut out = Zeroizing::new(String::new());
        FormatAsPaserk::fmt(&self.secret, &mut *out).map_err(|_| ClientKeyError::InvalidKey)?;
        Ok(out)
    }

    /// The public key, PASERK `k4.public.…`: the `client_key` to offer.
    pub fn public_paserk(&self) -> &str {
        &self.public
    }

    /// The PASERK `k4.pid.…` of the public key: a bound token's `cnf.kpid`.
    pub fn kpid(&self) -> &str {
        &self.kpid
    }

    /// A proof for one request (`method`, path-and-query `uri`) made with
    /// `token`, dated `now`, with a fresh 256-bit nonce.
    pub fn sign_proof_at(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<String, ClientKeyError> {
        let mut nonce = [0u8; NONCE_BYTES];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ClientKeyError::Random)?;
        self.sign_proof_with_jti_at(method, uri, token, &URL_SAFE_NO_PAD.encode(nonce), now)
    }

    /// [`sign_proof_at`](Self::sign_proof_at) with a given nonce: Ed25519
    /// is deterministic, so equal inputs give the same proof (test vectors).
    pub fn sign_proof_with_jti_at(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        jti: &str,
        now: SystemTime,
    ) -> Result<String, ClientKeyError> {
        let unix = now
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or(ClientKeyError::Signing)?;
        let claims = WireProof {
            htm: method.to_owned(),
            htu: uri.to_owned(),
            iat: proof::format_iat(unix).ok_or(ClientKeyError::Signing)?,
            jti: jti.to_owned(),
            ath: proof::token_hash(token),
            key: self.public.clone(),
        };
        proof::sign(&self.secret, &claims).ok_or(ClientKeyError::Signing)
    }

    /// The secret key, for tests that forge proofs.
    #[cfg(test)]
    pub(super) fn secret_for_tests(&self) -> AsymmetricSecretKey<V4> {
        self.secret.clone()
    }

    fn from_parts(
        secret: AsymmetricSecretKey<V4>,
        public: &AsymmetricPublicKey<V4>,
    ) -> Result<Self, ClientKeyError> {
        let mut paserk = String::new();
        FormatAsPaserk::fmt(public, &mut paserk).map_err(|_| ClientKeyError::InvalidKey)?;
        let kpid = proof::pid(public).ok_or(ClientKeyError::InvalidKey)?;
        Ok(Self {
            secret,
            public: paserk,
            kpid,
        })
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("kpid", &self.kpid)
            .finish_non_exhaustive()
    }
}

/// Why a client key could not be made, read or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientKeyError {
    /// The text is not a PASERK `k4.secret` key (prefix, encoding, length,
    /// or a public half that does not match the seed).
    #[error("not a PASERK k4.secret key")]
    InvalidKey,
    /// The OS random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// The proof could not be signed (a time outside RFC 3339's range).
    #[error("cannot sign the proof")]
    Signing,
}

/// Nonce size of proofs made here: 256 bits.
const NONCE_BYTES: usize = 32;
