//! PASETO `v4.public` session and refresh tokens: the format, minting and
//! verification. No state: the [`KeyRing`] supplies keys, the caller the time.
//!
//! A token is `v4.public.<payload ‖ Ed25519 signature>.<footer>`, the footer
//! being exactly `{"kid":"k4.pid.…"}`. The payload is JSON with `iss`,
//! `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`, `typ`, `scope` (omitted when
//! empty), `sid`, `auth_time` and optionally `cnf`; times are RFC 3339 in
//! whole seconds. Any conforming PASETO v4 implementation can verify it with
//! the published key.
//!
//! [`verify_at`] checks, in this order: total size → exact `v4.public.`
//! header → footer (capped, then parsed) → key selected by `kid` → signature
//! → claims. Each step only runs on input the previous steps bounded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pasetors::Public;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::clock::format_rfc3339_secs as format_time;
use zeroize::Zeroizing;

use self::keyring::{KeyRing, SigningKey};
use crate::clock::{Clock, parse_rfc3339_secs};

pub mod keyring;
mod token_types;

pub use token_types::{
    Claims, Confirmation, MintedToken, TokenDraft, TokenError, TokenPolicy, TokenType,
    VerifiedClaims,
};

/// Mints a token signed by the ring's current signer, at `now`.
pub fn mint_at(
    ring: &KeyRing,
    policy: &TokenPolicy,
    draft: TokenDraft,
    now: SystemTime,
) -> Result<MintedToken, TokenError> {
    let signer = ring.signer().map_err(|_| TokenError::NoSigningKey)?;
    mint_with_key_at(&signer, policy, draft, now)
}

/// [`mint_at`] reading the time from `clock`.
pub fn mint(
    ring: &KeyRing,
    policy: &TokenPolicy,
    draft: TokenDraft,
    clock: &dyn Clock,
) -> Result<MintedToken, TokenError> {
    mint_at(ring, policy, draft, clock.now())
}

/// Mints a token signed by `signer`, at `now`.
pub fn mint_with_key_at(
    signer: &SigningKey,
    policy: &TokenPolicy,
    draft: TokenDraft,
    now: SystemTime,
) -> Result<MintedToken, TokenError> {
    let wire = draft_to_wire(policy, draft, now)?;
    // Round-trip through the verifier's parser: what we mint, we accept.
    let claims = claims_from_wire(&wire)?;
    let payload = serde_json::to_vec(&wire).map_err(|_| TokenError::Signing)?;
    let footer = serde_json::to_vec(&Footer {
        kid: signer.kid().to_owned(),
    })
    .map_err(|_| TokenError::Signing)?;
    let token = PublicToken::sign(signer.secret(), &payload, Some(&footer), None)
        .map_err(|_| TokenError::Signing)?;
    let token = Zeroizing::new(token);
    // Never hand out a token that verification would refuse for its size.
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::InvalidDraft("claims too large for a token"));
    }
    Ok(MintedToken::new(token, claims))
}

/// Verifies `token` as a token of type `expected` at `now`.
pub fn verify_at(
    ring: &KeyRing,
    policy: &TokenPolicy,
    token: &str,
    expected: TokenType,
    now: SystemTime,
) -> Result<VerifiedClaims, TokenError> {
    // Steps 1-3 (size, header, footer) and the body's encoding: no key and
    // no crypto yet, and each step's work is bounded by the one before.
    let parsed = parse(token)?;
    // Step 4: the kid only selects a key. An unknown kid fails here and no
    // other key is tried: that would multiply the cost per token by the
    // ring size and blur which key vouches for it (PITFALLS K4).
    let key = ring
        .verifying_key(&parsed.kid)
        .ok_or(TokenError::UnknownKey)?;
    // Step 5: the signature covers header, payload and footer (PAE), so a
    // kid swapped into the footer breaks it even if that key is ours.
    let trusted = PublicToken::verify(key.public_key(), &parsed.untrusted, None, None).map_err(
        |e| match e {
            pasetors::errors::Error::PayloadInvalidUtf8 => TokenError::MalformedClaims,
            _ => TokenError::BadSignature,
        },
    )?;
    // Step 6: claims, parsed only once they are known to be ours.
    let claims = check_claims(policy, trusted.payload(), expected, now)?;
    Ok(VerifiedClaims::new(claims, parsed.kid))
}

/// Re-opens a token this fleet minted at `minted_at` (the sealed grace
/// copy of a refresh, minted by another replica): verified in full, as
/// of the time it was minted, so only a genuine token of ours comes back.
pub fn reopen_at(
    ring: &KeyRing,
    policy: &TokenPolicy,
    token: &str,
    expected: TokenType,
    minted_at: SystemTime,
) -> Result<MintedToken, TokenError> {
    let verified = verify_at(ring, policy, token, expected, minted_at)?;
    Ok(MintedToken::new(
        Zeroizing::new(token.to_owned()),
        verified.claims().clone(),
    ))
}

/// [`verify_at`] reading the time from `clock`.
pub fn verify(
    ring: &KeyRing,
    policy: &TokenPolicy,
    token: &str,
    expected: TokenType,
    clock: &dyn Clock,
) -> Result<VerifiedClaims, TokenError> {
    verify_at(ring, policy, token, expected, clock.now())
}

/// Runs every check that needs no key (size, header, footer, body
/// encoding, payload JSON shape) on untrusted input; for fuzzing.
#[doc(hidden)]
pub fn parse_untrusted(token: &str) -> Result<(), TokenError> {
    let parsed = parse(token)?;
    let payload = parsed.untrusted.untrusted_payload();
    let wire: WireClaims =
        serde_json::from_slice(payload).map_err(|_| TokenError::MalformedClaims)?;
    claims_from_wire(&wire).map(drop)
}

/// A token that passed steps 1-3, with its untrusted parts.
struct Parsed {
    kid: String,
    untrusted: UntrustedToken<Public, V4>,
}

fn parse(token: &str) -> Result<Parsed, TokenError> {
    // 1. Size first: all later work is linear in it, and we never mint more.
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    // 2. The header fixes version and purpose: `v4.public.` exactly, never
    //    v4.local, v3, v2 or another spelling (PITFALLS K6).
    let rest = token.strip_prefix(HEADER).ok_or(TokenError::BadHeader)?;
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !rest.bytes().all(|b| base64url(b) || b == b'.') {
        return Err(TokenError::Malformed);
    }
    // 3. The footer is required (it names the key) and is capped before it
    //    is decoded or parsed (PASETO spec; PITFALLS K4).
    let (body, footer) = rest.split_once('.').ok_or(TokenError::BadFooter)?;
    if body.is_empty() || footer.contains('.') {
        return Err(TokenError::Malformed);
    }
    let kid = parse_footer(footer)?;
    // Body encoding and minimum length (a 64-byte signature), via pasetors.
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
    Ok(Parsed { kid, untrusted })
}

/// The footer, exactly `{"kid":"k4.pid.…"}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Footer {
    kid: String,
}

fn parse_footer(encoded: &str) -> Result<String, TokenError> {
    if encoded.is_empty() || encoded.len() > MAX_FOOTER_B64_LEN {
        return Err(TokenError::BadFooter);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenError::BadFooter)?;
    let footer: Footer = serde_json::from_slice(&bytes).map_err(|_| TokenError::BadFooter)?;
    if !is_kid(&footer.kid) {
        return Err(TokenError::BadFooter);
    }
    // One byte form only: whitespace, escapes or reordering are refused, so
    // a footer means one thing to every reader.
    let canonical = serde_json::to_vec(&footer).map_err(|_| TokenError::BadFooter)?;
    if canonical != bytes {
        return Err(TokenError::BadFooter);
    }
    Ok(footer.kid)
}

/// The JSON payload as it travels.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: String,
    nbf: String,
    iat: String,
    jti: String,
    typ: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scope: Vec<String>,
    sid: String,
    auth_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation>,
}

fn check_claims(
    policy: &TokenPolicy,
    payload: &str,
    expected: TokenType,
    now: SystemTime,
) -> Result<Claims, TokenError> {
    let wire: WireClaims =
        serde_json::from_str(payload).map_err(|_| TokenError::MalformedClaims)?;
    let now = unix_secs(now);
    let leeway = i64::try_from(policy.leeway.as_secs()).unwrap_or(i64::MAX);
    // pasetors has no leeway, so the time checks are ours (PITFALLS K5).
    if now >= parse_time(&wire.exp)?.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if parse_time(&wire.nbf)? > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    if parse_time(&wire.iat)? > now.saturating_add(leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    // Revocations last until the latest `exp` a token they name can have,
    // computed from this bound: a token minted beyond it (an old CLI, a
    // longer limit since shortened) would outlive its revocation.
    if !policy.allows_lifetime(parse_time(&wire.auth_time)?, parse_time(&wire.exp)?) {
        return Err(TokenError::LifetimeExceeded);
    }
    // Constant-time because these values come from the token. None is a
    // secret, so this is defence in depth; ct_eq still returns early on a
    // length mismatch, and lengths are public.
    if !ct_eq(&wire.iss, &policy.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    if !ct_eq(&wire.aud, &policy.audience) {
        return Err(TokenError::WrongAudience);
    }
    // A refresh token is never a session token, nor the reverse.
    if !ct_eq(&wire.typ, expected.as_str()) {
        return Err(TokenError::WrongType);
    }
    claims_from_wire(&wire)
}

/// Whether verified `claims` still pass the time checks of
/// [`verify_at`] at `now` (`exp`, `nbf`, `iat`, same leeway, same whole
/// seconds): what a cached verification must re-check on every use.
pub(crate) fn times_valid_at(claims: &Claims, leeway: Duration, now: SystemTime) -> bool {
    let now = unix_secs(now);
    let leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
    now < unix_secs(claims.exp).saturating_add(leeway)
        && unix_secs(claims.nbf) <= now.saturating_add(leeway)
        && unix_secs(claims.iat) <= now.saturating_add(leeway)
}

/// Structural checks shared by minting and verification.
fn claims_from_wire(wire: &WireClaims) -> Result<Claims, TokenError> {
    let bad = TokenError::MalformedClaims;
    let typ = match wire.typ.as_str() {
        "session" => TokenType::Session,
        "refresh" => TokenType::Refresh,
        _ => return Err(TokenError::WrongType),
    };
    let (iat, nbf, exp) = (
        parse_time(&wire.iat)?,
        parse_time(&wire.nbf)?,
        parse_time(&wire.exp)?,
    );
    let auth_time = parse_time(&wire.auth_time)?;
    let ordered = auth_time <= iat && nbf < exp && iat < exp;
    let ids_ok = is_random_id(&wire.jti) && is_random_id(&wire.sid);
    let cnf_ok = wire.cnf.as_ref().is_none_or(is_confirmation);
    if !ordered || !ids_ok || !cnf_ok || !is_subject(&wire.sub) {
        return Err(bad);
    }
    if !wire.scope.iter().all(|s| is_scope(s)) || wire.iss.is_empty() || wire.aud.is_empty() {
        return Err(bad);
    }
    Ok(Claims {
        jti: wire.jti.clone(),
        sub: wire.sub.clone(),
        iss: wire.iss.clone(),
        aud: wire.aud.clone(),
        typ,
        iat: to_system_time(iat).ok_or(TokenError::MalformedClaims)?,
        nbf: to_system_time(nbf).ok_or(TokenError::MalformedClaims)?,
        exp: to_system_time(exp).ok_or(TokenError::MalformedClaims)?,
        scope: wire.scope.clone(),
        sid: wire.sid.clone(),
        auth_time: to_system_time(auth_time).ok_or(TokenError::MalformedClaims)?,
        cnf: wire.cnf.clone(),
    })
}

fn draft_to_wire(
    policy: &TokenPolicy,
    draft: TokenDraft,
    now: SystemTime,
) -> Result<WireClaims, TokenError> {
    let invalid = TokenError::InvalidDraft;
    let iat = unix_secs(now);
    let ttl = i64::try_from(draft.ttl.as_secs()).map_err(|_| invalid("ttl is too long"))?;
    if ttl == 0 {
        return Err(invalid("ttl must be at least 1s"));
    }
    let exp = iat.checked_add(ttl).ok_or(invalid("ttl is too long"))?;
    let auth_time = draft.auth_time.map_or(iat, unix_secs);
    if auth_time > iat {
        return Err(invalid("auth_time is in the future"));
    }
    // What we mint, we accept: never a token the policy would refuse.
    if !policy.allows_lifetime(auth_time, exp) {
        return Err(invalid("ttl is longer than [tokens] absolute_timeout"));
    }
    if !is_subject(&draft.sub) {
        return Err(invalid(
            "sub must be 1-256 characters, no control characters",
        ));
    }
    if !draft.scope.iter().all(|s| is_scope(s)) {
        return Err(invalid(
            "each scope must be 1-128 visible ASCII characters, no '\"' or '\\'",
        ));
    }
    let sid = match draft.sid {
        Some(sid) if is_random_id(&sid) => sid,
        Some(_) => return Err(invalid("sid must be 32 bytes, base64url without padding")),
        None => random_id()?,
    };
    let cnf = draft
        .cnf
        .filter(|c| c.kpid.is_some() || c.x5t_s256.is_some());
    if !cnf.as_ref().is_none_or(is_confirmation) {
        return Err(invalid(
            "cnf: kpid must be a k4.pid, x5t#S256 a base64url SHA-256",
        ));
    }
    let time = |secs| format_time(secs).ok_or(invalid("time out of the RFC 3339 range"));
    Ok(WireClaims {
        iss: policy.issuer.clone(),
        sub: draft.sub,
        aud: policy.audience.clone(),
        exp: time(exp)?,
        nbf: time(iat)?,
        iat: time(iat)?,
        jti: random_id()?,
        typ: draft.typ.as_str().to_owned(),
        scope: draft.scope,
        sid,
        auth_time: time(auth_time)?,
        cnf,
    })
}

/// 32 bytes (256 bits) from the OS CSPRNG, base64url without padding.
fn random_id() -> Result<String, TokenError> {
    let mut bytes = [0u8; ID_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn is_random_id(s: &str) -> bool {
    s.len() == ID_B64_LEN
        && URL_SAFE_NO_PAD
            .decode(s)
            .is_ok_and(|bytes| bytes.len() == ID_BYTES)
}

/// A PASERK `k4.pid`: the prefix and a base64url BLAKE2b-264 digest.
fn is_kid(kid: &str) -> bool {
    kid.strip_prefix("k4.pid.").is_some_and(|id| {
        URL_SAFE_NO_PAD
            .decode(id)
            .is_ok_and(|bytes| bytes.len() == KID_DIGEST_BYTES)
    })
}

fn is_confirmation(cnf: &Confirmation) -> bool {
    let kpid_ok = cnf.kpid.as_deref().is_none_or(is_kid);
    let x5t_ok = cnf
        .x5t_s256
        .as_deref()
        .is_none_or(|t| t.len() == 43 && URL_SAFE_NO_PAD.decode(t).is_ok_and(|d| d.len() == 32));
    (cnf.kpid.is_some() || cnf.x5t_s256.is_some()) && kpid_ok && x5t_ok
}

/// The subject is forwarded upstream in a header: no control characters.
fn is_subject(sub: &str) -> bool {
    !sub.is_empty() && sub.len() <= MAX_SUBJECT_LEN && !sub.chars().any(char::is_control)
}

/// RFC 6749 §3.3 scope-token characters (visible ASCII except `"` and `\`).
fn is_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

fn ct_eq(actual: &str, expected: &str) -> bool {
    actual.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Whole seconds since the epoch (negative before 1970), rounded down.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| {
            -s - i64::from(e.duration().subsec_nanos() > 0)
        }),
    }
}

fn to_system_time(secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

fn parse_time(s: &str) -> Result<i64, TokenError> {
    parse_rfc3339_secs(s).ok_or(TokenError::MalformedClaims)
}

const HEADER: &str = "v4.public.";
/// Whole-token cap. A typical token is ~600 bytes (payload ~330 JSON bytes
/// → 440 base64, signature 86, footer 82, header 10); 4 KiB leaves ~2.5 KB of
/// JSON for subjects and scopes and stays far below HTTP header limits.
pub const MAX_TOKEN_LEN: usize = 4 * 1024;
/// Decoded footer cap. Ours is 61 bytes (`{"kid":"` + 51-byte kid + `"}`);
/// 256 is ~4× that and far below pasetors' 8 KiB default (PITFALLS K4).
pub const MAX_FOOTER_LEN: usize = 256;
/// [`MAX_FOOTER_LEN`] in unpadded base64: checked before decoding.
const MAX_FOOTER_B64_LEN: usize = (MAX_FOOTER_LEN * 4).div_ceil(3);
const ID_BYTES: usize = 32;
/// Unpadded base64 of 32 bytes.
const ID_B64_LEN: usize = 43;
/// PASERK ids are 33-byte BLAKE2b digests.
const KID_DIGEST_BYTES: usize = 33;
const MAX_SUBJECT_LEN: usize = 256;
const MAX_SCOPE_LEN: usize = 128;

#[cfg(test)]
mod tests;
