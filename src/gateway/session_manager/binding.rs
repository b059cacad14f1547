//! Session binding: sender-constrained sessions (RFC 9449 DPoP and RFC 8705
//! mTLS-bound tokens, adapted to PASETO). A bound session token is useless
//! without a key or certificate that never leaves the client.
//!
//! A session token's `cnf` claim names what the presenter must also prove:
//!
//! - `cnf.kpid`: the PASERK `k4.pid` of a client Ed25519 key. Every request
//!   carries a **proof** in the `Clawgate-Proof` header: a PASETO
//!   `v4.public` token signed by that key, no footer, whose payload is
//!
//!   ```json
//!   {"htm":"GET","htu":"/v1/items?limit=5","iat":"2025-01-01T12:00:00Z",
//!    "jti":"<16-64 random bytes, base64url>","ath":"<base64url SHA-256 of the token>",
//!    "key":"k4.public.…"}
//!   ```
//!
//!   The key travels in the payload, never in the footer (PASERK forbids
//!   public keys in footers, PITFALLS K4); it is trusted only once its
//!   `k4.pid` equals `cnf.kpid`, which the gateway signed.
//! - `cnf.x5t#S256`: base64url SHA-256 of a client certificate (DER); the
//!   token is accepted only on TLS connections presenting that certificate.
//!
//! [`ProofChecker::check_at`] runs, in this order: certificate (cheap,
//! public values) → proof present → size, header, no footer, encoding,
//! claim formats → the proof key's pid equals `cnf.kpid` → signature →
//! `htm`, `htu`, `ath` → `iat` window and `jti` nonce ([`ReplayGuard`]).
//! The nonce cache is touched last, so only fully verified proofs can take
//! a slot in it. The full format, with test vectors and a client in another
//! language, is in `docs/session-binding.md`.

mod key;
mod proof;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::gateway::replay_protection::{
    FleetNonce, NonceOwner, ReplayError, ReplayGuard, confirm_fleet,
};
use crate::gateway::session_token::Confirmation;

pub use key::{ClientKey, ClientKeyError};
pub use proof::{
    MAX_PROOF_LEN, ProofRequest, VerifiedProof, client_key_id, token_hash, verify_proof,
};

/// The request header carrying a proof (HTTP header names are
/// case-insensitive; this is the lower-case form).
pub const PROOF_HEADER: &str = "clawgate-proof";

/// Checks the binding of a session against one request. Cheap to clone
/// behind an `Arc`; all state is the shared [`ReplayGuard`].
#[derive(Debug, Clone)]
pub struct ProofChecker {
    replay: Arc<ReplayGuard>,
}

/// What one request presents besides its token.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The request method, exactly as received (`GET`).
    pub method: &'a str,
    /// The request target's path and query, exactly as received
    /// (`/v1/items?limit=5`).
    pub uri: &'a str,
    /// The token the proof must be made for (its `ath`): the session token,
    /// or the refresh token at `/auth/refresh`.
    pub token: &'a str,
    /// The `Clawgate-Proof` header value, if any.
    pub proof: Option<&'a [u8]>,
    /// Lower-case hex SHA-256 of the connection's client certificate.
    pub client_cert_sha256: Option<&'a str>,
}

/// What a successful check established.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// A proof was verified and its nonce spent: it replaces the plain
    /// `X-Request-Nonce`/`X-Request-Timestamp` replay headers.
    pub proof_verified: bool,
    /// The connection's certificate matched `cnf.x5t#S256`.
    pub certificate_verified: bool,
}

impl ProofChecker {
    /// A checker spending proof nonces in `replay` (its window, leeway and
    /// capacity apply to proofs too).
    pub fn new(replay: Arc<ReplayGuard>) -> Self {
        Self { replay }
    }

    /// Checks `cnf` (the verified token's binding, if any) against the
    /// request at wall-clock `now_unix`. An unbound token passes untouched;
    /// a bound token is checked whatever the `[auth] binding` policy, so a
    /// bound token is never weaker than its binding. `session_id` scopes
    /// the proof nonces.
    pub fn check_at(
        &self,
        cnf: Option<&Confirmation>,
        session_id: &str,
        presented: &Presented<'_>,
        now_unix: u64,
    ) -> Result<Confirmed, BindingError> {
        let owner = NonceOwner {
            session_id,
            subject: None,
        };
        self.check_for(cnf, owner, presented, now_unix)
    }

    /// [`check_at`](Self::check_at) charging proof nonces to `owner`'s
    /// session and subject shares of the nonce cache.
    ///
    /// In cluster mode a proof nonce needs the fleet's answer, which this
    /// call cannot wait for: it is refused as
    /// [`BindingError::ReplayUnavailable`] (fail closed). Use
    /// [`begin_for`](Self::begin_for) there.
    pub fn check_for(
        &self,
        cnf: Option<&Confirmation>,
        owner: NonceOwner<'_>,
        presented: &Presented<'_>,
        now_unix: u64,
    ) -> Result<Confirmed, BindingError> {
        match self.begin_for(cnf, owner, presented, now_unix)? {
            (confirmed, None) => Ok(confirmed),
            (_, Some(_unconfirmed)) => Err(BindingError::ReplayUnavailable),
        }
    }

    /// [`check_for`](Self::check_for) up to the local nonce cache. A
    /// verified proof in cluster mode also returns its nonce, which
    /// [`confirm_proof_nonce`] must confirm with the fleet before the
    /// request is accepted.
    pub fn begin_for(
        &self,
        cnf: Option<&Confirmation>,
        owner: NonceOwner<'_>,
        presented: &Presented<'_>,
        now_unix: u64,
    ) -> Result<(Confirmed, Option<FleetNonce>), BindingError> {
        let Some(cnf) = cnf else {
            return Ok((Confirmed::default(), None));
        };
        let mut confirmed = Confirmed::default();
        if let Some(x5t) = cnf.x5t_s256.as_deref() {
            check_certificate(x5t, presented.client_cert_sha256)?;
            confirmed.certificate_verified = true;
        }
        if let Some(kpid) = cnf.kpid.as_deref() {
            let proof = presented.proof.ok_or(BindingError::ProofMissing)?;
            let request = ProofRequest {
                method: presented.method,
                uri: presented.uri,
                token: presented.token,
            };
            let verified = verify_proof(proof, kpid, &request)?;
            let fleet = self.spend(owner, &verified, now_unix)?;
            confirmed.proof_verified = true;
            return Ok((confirmed, fleet));
        }
        Ok((confirmed, None))
    }

    /// Time window and nonce, last: only a fully verified proof reaches the
    /// cache. A pre-1970 `iat` is simply stale.
    fn spend(
        &self,
        owner: NonceOwner<'_>,
        proof: &VerifiedProof,
        now_unix: u64,
    ) -> Result<Option<FleetNonce>, BindingError> {
        let iat = u64::try_from(proof.iat).map_err(|_| BindingError::ProofStale)?;
        self.replay
            .begin_bytes_for(
                owner,
                Some(proof.jti.as_bytes()),
                Some(iat.to_string().as_bytes()),
                now_unix,
            )
            .map_err(from_replay)
    }
}

/// Asks the fleet about a verified proof's nonce (cluster mode): `Ok` when
/// no replica had seen it, [`BindingError::ProofReplayed`] when one had,
/// [`BindingError::ReplayUnavailable`] when Redis could not answer (fail
/// closed: 503).
pub async fn confirm_proof_nonce(nonce: FleetNonce) -> Result<(), BindingError> {
    confirm_fleet(nonce).await.map_err(from_replay)
}

/// The `cnf` a client asked for at pairing or login: `client_key` (PASERK
/// `k4.public`) binds to that key; `bind_certificate` binds to the
/// connection's client certificate (`client_cert_sha256`, hex), which must
/// then be present. Both may be asked for at once. `None` when neither.
pub fn requested_confirmation(
    client_key: Option<&str>,
    bind_certificate: bool,
    client_cert_sha256: Option<&str>,
) -> Result<Option<Confirmation>, BindingError> {
    let kpid = client_key.map(client_key_id).transpose()?;
    let x5t_s256 = if bind_certificate {
        let hex = client_cert_sha256.ok_or(BindingError::CertificateRequired)?;
        Some(certificate_thumbprint(hex).ok_or(BindingError::CertificateRequired)?)
    } else {
        None
    };
    if kpid.is_none() && x5t_s256.is_none() {
        return Ok(None);
    }
    Ok(Some(Confirmation { kpid, x5t_s256 }))
}

/// For callers that cannot check a binding (no request at hand): refuses
/// any bound token, so skipping the check never weakens a binding.
pub fn require_unbound(cnf: Option<&Confirmation>) -> Result<(), BindingError> {
    match cnf {
        Some(c) if c.kpid.is_some() => Err(BindingError::ProofMissing),
        Some(c) if c.x5t_s256.is_some() => Err(BindingError::CertificateMissing),
        _ => Ok(()),
    }
}

/// RFC 8705 `x5t#S256` from the lower-case (or upper-case) hex SHA-256
/// of a DER certificate: the same 32 bytes, base64url without padding.
/// `None` unless `hex` is exactly 64 hex digits.
pub fn certificate_thumbprint(hex: &str) -> Option<String> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (out, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *out = u8::from_str_radix(text, 16).ok()?;
    }
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The certificate check. Plain comparison, not constant-time: both
/// thumbprints are public values (a certificate is public by nature, the
/// token's claims are readable by whoever holds it), and knowing one does
/// not let anyone present the certificate: that takes its private key.
fn check_certificate(x5t: &str, client_cert_sha256: Option<&str>) -> Result<(), BindingError> {
    let hex = client_cert_sha256.ok_or(BindingError::CertificateMissing)?;
    match certificate_thumbprint(hex) {
        Some(presented) if presented == x5t => Ok(()),
        _ => Err(BindingError::CertificateMismatch),
    }
}

fn from_replay(e: ReplayError) -> BindingError {
    match e {
        ReplayError::MissingNonce
        | ReplayError::MalformedNonce
        | ReplayError::MissingTimestamp
        | ReplayError::MalformedTimestamp => BindingError::ProofMalformed,
        ReplayError::Stale => BindingError::ProofStale,
        ReplayError::Future => BindingError::ProofFuture,
        ReplayError::Replayed => BindingError::ProofReplayed,
        ReplayError::CapacityExhausted => BindingError::CapacityExhausted,
        ReplayError::QuotaExhausted => BindingError::QuotaExhausted,
        ReplayError::Unavailable => BindingError::ReplayUnavailable,
    }
}

/// Why a binding was refused (or could not be set up). Messages are fixed
/// and never contain a token, a proof or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The session is key-bound and the request has no `Clawgate-Proof`.
    #[error("a proof of possession is required for this session")]
    ProofMissing,
    /// The proof is not a well-formed proof: too long, not `v4.public.`, a
    /// footer, bad encoding, a missing or badly formed claim, or several
    /// `Clawgate-Proof` headers.
    #[error("the proof is malformed")]
    ProofMalformed,
    /// The proof's `key` is not the key the session is bound to (its
    /// `k4.pid` differs from `cnf.kpid`); the signature was not checked.
    #[error("the proof was made with another key")]
    KeyMismatch,
    /// The proof's signature does not verify with the bound key.
    #[error("the proof signature is invalid")]
    BadSignature,
    /// `htm` is not the request's method.
    #[error("the proof was made for another method")]
    MethodMismatch,
    /// `htu` is not the request's path and query.
    #[error("the proof was made for another URI")]
    UriMismatch,
    /// `ath` is not the hash of the presented token.
    #[error("the proof was made for another token")]
    TokenMismatch,
    /// `iat` is older than the replay window (plus leeway) allows.
    #[error("the proof is too old")]
    ProofStale,
    /// `iat` is further ahead than the replay window (plus leeway) allows.
    #[error("the proof is dated in the future")]
    ProofFuture,
    /// This proof's `jti` was already used by this session in the window.
    #[error("the proof was already used")]
    ProofReplayed,
    /// The nonce cache is full: refused rather than forgetting a live
    /// nonce (fail closed, PITFALLS R4).
    #[error("proof checking is at capacity; retry later")]
    CapacityExhausted,
    /// This session (or its subject) holds its whole share of the nonce
    /// cache; its other requests wait until its own entries expire.
    #[error("this session has too many recent proofs; retry later")]
    QuotaExhausted,
    /// Cluster mode: Redis did not answer whether another replica saw
    /// this proof's nonce; refused rather than risk a replay (fail closed).
    #[error("proof checking is unavailable; retry with a new proof")]
    ReplayUnavailable,
    /// The session is certificate-bound and the connection presented no
    /// client certificate.
    #[error("a client certificate is required for this session")]
    CertificateMissing,
    /// The connection's client certificate is not the bound one.
    #[error("the client certificate is not the one this session is bound to")]
    CertificateMismatch,
    /// Issuance: `client_key` is not a PASERK `k4.public` key.
    #[error("client_key must be a PASERK k4.public key")]
    InvalidClientKey,
    /// Issuance: certificate binding was asked for on a connection without
    /// a client certificate.
    #[error("certificate binding needs a client certificate on this connection")]
    CertificateRequired,
}

impl BindingError {
    /// A stable snake_case code for responses, logs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ProofMissing => "proof_missing",
            Self::ProofMalformed => "proof_malformed",
            Self::KeyMismatch => "proof_key_mismatch",
            Self::BadSignature => "proof_signature_invalid",
            Self::MethodMismatch => "proof_method_mismatch",
            Self::UriMismatch => "proof_uri_mismatch",
            Self::TokenMismatch => "proof_token_mismatch",
            Self::ProofStale => "proof_stale",
            Self::ProofFuture => "proof_future",
            Self::ProofReplayed => "proof_replayed",
            Self::CapacityExhausted => "proof_capacity_exhausted",
            Self::QuotaExhausted => "proof_quota_exhausted",
            Self::ReplayUnavailable => "replay_unavailable",
            Self::CertificateMissing => "certificate_missing",
            Self::CertificateMismatch => "certificate_mismatch",
            Self::InvalidClientKey => "invalid_client_key",
            Self::CertificateRequired => "certificate_required",
        }
    }
}

#[cfg(test)]
mod tests;
