//! The proof format: parse, verify and sign one `Clawgate-Proof` token.
//! No state and no clock: the time window and the nonce are the
//! [`ProofChecker`](super::ProofChecker)'s.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pasetors::Public;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

pub(super) use crate::clock::format_rfc3339_secs as format_iat;
use crate::clock::parse_rfc3339_secs;

use super::BindingError;

/// What the proof must have been made for.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// Request method (`htm`), compared exactly.
    pub method: &'a str,
    /// Request path and query (`htu`), compared exactly.
    pub uri: &'a str,
    /// The token whose SHA-256 `ath` must be.
    pub token: &'a str,
}

/// A proof whose key, signature, method, URI and token hash were checked;
/// its time and nonce are still to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// `iat` in Unix seconds (fractions cut).
    pub iat: i64,
    /// The nonce (`jti`), base64url.
    pub jti: String,
}

/// Verifies `proof` (a `Clawgate-Proof` header value) for a session bound
/// to `kpid` and the request `request`. Time and nonce are not checked
/// here: [`ProofChecker::check_at`](super::ProofChecker::check_at) does that.
///
/// Order: size → `v4.public.` header, no footer → encoding → claim
/// formats (no crypto yet; each step bounded by the one before) → the
/// key's `k4.pid` equals `kpid` → signature → `htm`, `htu`, `ath`.
pub fn verify_proof(
    proof: &[u8],
    kpid: &str,
    request: &ProofRequest<'_>,
) -> Result<VerifiedProof, BindingError> {
    let parsed = parse(proof)?;
    // The key comes from the untrusted payload: it is trusted only because
    // its pid is the one the gateway signed into cnf, so this comparison
    // must come before the signature check. Plain comparison: both are
    // public identifiers.
    if parsed.kpid != kpid {
        return Err(BindingError::KeyMismatch);
    }
    PublicToken::verify(&parsed.key, &parsed.untrusted, None, None)
        .map_err(|_| BindingError::BadSignature)?;
    // The claims below were parsed from exactly the bytes just verified.
    let claims = parsed.claims;
    // Methods are case-sensitive (RFC 9110 §9.1): compare exactly.
    if claims.htm != request.method {
        return Err(BindingError::MethodMismatch);
    }
    if claims.htu != request.uri {
        return Err(BindingError::UriMismatch);
    }
    // Constant-time: ath is derived from a bearer secret.
    let expected = token_hash(request.token);
    if !bool::from(claims.ath.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(BindingError::TokenMismatch);
    }
    Ok(VerifiedProof {
        iat: parsed.iat,
        jti: claims.jti,
    })
}

/// `ath`: base64url (no padding) of the SHA-256 of the token string.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()))
}

/// The PASERK `k4.pid` of a PASERK `k4.public` key (a client key offered
/// at pairing or login); [`BindingError::InvalidClientKey`] otherwise.
pub fn client_key_id(public: &str) -> Result<String, BindingError> {
    let key = parse_public(public).ok_or(BindingError::InvalidClientKey)?;
    pid(&key).ok_or(BindingError::InvalidClientKey)
}

/// The payload as it travels. Unknown members are ignored (signed, but
/// they mean nothing here); these six are required.
#[derive(Serialize, Deserialize)]
pub(super) struct WireProof {
    pub(super) htm: String,
    pub(super) htu: String,
    pub(super) iat: String,
    pub(super) jti: String,
    pub(super) ath: String,
    pub(super) key: String,
}

/// Signs `claims` with `secret`: `v4.public.` + payload + signature, no
/// footer, no implicit assertion.
pub(super) fn sign(secret: &AsymmetricSecretKey<V4>, claims: &WireProof) -> Option<String> {
    let payload = serde_json::to_vec(claims).ok()?;
    PublicToken::sign(secret, &payload, None, None).ok()
}

/// The PASERK `k4.pid` of `key`.
pub(super) fn pid(key: &AsymmetricPublicKey<V4>) -> Option<String> {
    let mut out = String::new();
    FormatAsPaserk::fmt(&Id::from(key), &mut out).ok()?;
    Some(out)
}

/// A proof that passed the checks needing no key.
struct Parsed {
    untrusted: UntrustedToken<Public, V4>,
    claims: WireProof,
    key: AsymmetricPublicKey<V4>,
    kpid: String,
    iat: i64,
}

fn parse(proof: &[u8]) -> Result<Parsed, BindingError> {
    let bad = BindingError::ProofMalformed;
    // Size first: everything after is linear in it.
    if proof.len() > MAX_PROOF_LEN {
        return Err(bad);
    }
    let text = std::str::from_utf8(proof).map_err(|_| bad)?;
    // Version and purpose are fixed: `v4.public.` exactly (PITFALLS K6).
    let body = text.strip_prefix(HEADER).ok_or(bad)?;
    // Base64url only: no '.', so no footer (a proof has nothing to say there).
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if body.is_empty() || !body.bytes().all(base64url) {
        return Err(bad);
    }
    let untrusted = UntrustedToken::<Public, V4>::try_from(text).map_err(|_| bad)?;
    let claims: WireProof =
        serde_json::from_slice(untrusted.untrusted_payload()).map_err(|_| bad)?;
    let iat = check_formats(&claims).ok_or(bad)?;
    let key = parse_public(&claims.key).ok_or(bad)?;
    let kpid = pid(&key).ok_or(bad)?;
    Ok(Parsed {
        untrusted,
        claims,
        key,
        kpid,
        iat,
    })
}

/// Every claim's shape; returns `iat` in Unix seconds.
fn check_formats(claims: &WireProof) -> Option<i64> {
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let method_ok = !claims.htm.is_empty()
        && claims.htm.len() <= MAX_METHOD_LEN
        && claims.htm.bytes().all(token_char);
    let uri_ok = !claims.htu.is_empty() && !claims.htu.chars().any(char::is_control);
    let jti_ok = (MIN_JTI_CHARS..=MAX_JTI_CHARS).contains(&claims.jti.len())
        && URL_SAFE_NO_PAD
            .decode(&claims.jti)
            .is_ok_and(|b| (MIN_JTI_BYTES..=MAX_JTI_BYTES).contains(&b.len()));
    let ath_ok = claims.ath.len() == ATH_CHARS;
    if !(method_ok && uri_ok && jti_ok && ath_ok) || claims.iat.len() > MAX_IAT_LEN {
        return None;
    }
    parse_rfc3339_secs(&claims.iat)
}

fn parse_public(text: &str) -> Option<AsymmetricPublicKey<V4>> {
    // PASERK checks the `k4.public.` prefix, the encoding and the length.
    (text.len() <= MAX_KEY_LEN)
        .then(|| AsymmetricPublicKey::<V4>::try_from(text).ok())
        .flatten()
}

const HEADER: &str = "v4.public.";
/// Longest accepted proof. The claims other than `htu` take about 300
/// bytes of JSON and the signature 64, base64 adds a third: 8 KiB leaves
/// about 5.5 KB for the path and query, and still fits with the session
/// token in the default 16 KiB request head.
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// Longest method name accepted (standard methods are at most 7 bytes).
const MAX_METHOD_LEN: usize = 32;
/// `jti` sizes, as the replay guard's nonces: 16 to 64 random bytes,
/// 22 to 86 base64url characters.
const MIN_JTI_BYTES: usize = 16;
const MAX_JTI_BYTES: usize = 64;
const MIN_JTI_CHARS: usize = 22;
const MAX_JTI_CHARS: usize = 86;
/// base64url of a 32-byte SHA-256 digest, unpadded.
const ATH_CHARS: usize = 43;
/// `k4.public.` + 43 base64url characters.
const MAX_KEY_LEN: usize = 53;
/// RFC 3339 with nine fraction digits and an offset is 35 characters.
const MAX_IAT_LEN: usize = 40;
