//! Refresh rotation exactly once across the fleet.
//!
//! One Lua script (`scripts/refresh.lua`) decides, atomically on the
//! server, what a presented refresh token gets: `rotated` (first
//! presentation anywhere: the marker `{cg}:rt:<jti>` and the sealed new
//! pair `{cg}:rtg:<jti>` are stored), `grace` (spent within
//! `refresh_grace`: the stored pair, the same bytes on any replica),
//! `reuse` (spent earlier: theft) or `revoked` (the family is revoked).
//! No lease lock: there is nothing to expire mid-rotation.
//!
//! The pair is minted *before* the script runs and sealed with
//! ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the presented
//! refresh token itself, so a copy of Redis yields no usable token: only
//! a holder of the refresh token can open it. A timeout is retry-safe: if
//! the script ran, the client's retry within the grace window gets the
//! stored pair.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::{Cluster, ClusterError};

/// The operation name in metrics (`op="refresh"`).
pub const OP: &str = "refresh";

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/refresh.lua")));

/// What the fleet decided for one presented refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum Spend {
    /// First presentation: this replica's pair is the one.
    Rotated,
    /// Spent within the grace window: the winner's sealed pair.
    Grace(Vec<u8>),
    /// Spent earlier (or revoked by `jti`): theft.
    Reuse,
    /// The session or subject is revoked.
    Revoked,
}

/// The script's arguments: ids and times from a verified refresh token.
#[derive(Debug, Clone)]
pub struct SpendArgs {
    /// The token's session (family).
    pub sid: String,
    /// Its subject.
    pub sub: String,
    /// Its `iat`, Unix seconds (a subject revocation cuts by it).
    pub iat: u64,
    /// Its id.
    pub jti: String,
    /// `[tokens] refresh_grace`.
    pub grace: Duration,
    /// How long the spent marker must live: until the token's `exp` plus
    /// leeway (after that the token no longer verifies anywhere).
    pub marker_ttl: Duration,
    /// The sealed new pair ([`seal`]); empty when `known_spent`.
    pub blob: Vec<u8>,
    /// This replica already holds the `jti` as spent (revoked): the answer
    /// is `grace` or `reuse`, never `rotated`, even if Redis lost the
    /// marker and the revocation (a wipe not yet re-seeded).
    pub known_spent: bool,
}

/// Runs the script within `command_timeout`.
pub async fn spend(cluster: &Cluster, args: &SpendArgs) -> Result<Spend, ClusterError> {
    let mut invocation = SCRIPT.prepare_invoke();
    invocation
        .key(cluster.slot_key("rev"))
        .key(cluster.slot_key(&format!("rt:{}", args.jti)))
        .key(cluster.slot_key(&format!("rtg:{}", args.jti)))
        .arg(&args.sid)
        .arg(&args.sub)
        .arg(args.iat)
        .arg(&args.jti)
        .arg(millis(args.grace))
        .arg(millis(args.marker_ttl).max(1))
        .arg(args.blob.as_slice())
        .arg(if args.known_spent { "1" } else { "0" });
    let reply: Vec<Vec<u8>> = cluster.script(OP, invocation).await?;
    let outcome = match reply.as_slice() {
        [status] if status.as_slice() == b"rotated" => Spend::Rotated,
        [status] if status.as_slice() == b"reuse" => Spend::Reuse,
        [status] if status.as_slice() == b"revoked" => Spend::Revoked,
        [status, blob] if status.as_slice() == b"grace" => Spend::Grace(blob.clone()),
        _ => {
            cluster.metrics().error(OP, &ClusterError::Response);
            return Err(ClusterError::Response);
        }
    };
    Ok(outcome)
}

/// [`spend`] for synchronous callers (the refresh runs on the blocking
/// pool, where the spent token's revocation may fsync): the call runs on
/// the runtime and this thread waits for it, never past `command_timeout`
/// plus a little scheduling slack. Outside a runtime, or called from the
/// thread that drives a single-threaded runtime, it gives up at that
/// deadline as unavailable: never a panic, never a hang.
pub fn spend_blocking(cluster: &Arc<Cluster>, args: SpendArgs) -> Result<Spend, ClusterError> {
    let deadline = cluster.config().command_timeout + BRIDGE_SLACK;
    let cluster = Arc::clone(cluster);
    super::wait_bounded(deadline, async move { spend(&cluster, &args).await })
        .unwrap_or(Err(ClusterError::Timeout))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A sealing or opening failure (no detail: nothing to tell an attacker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot seal or open the grace copy")]
pub struct SealError;

/// Seals `plaintext` (the new pair) for the holder of `refresh_token`:
/// `version ‖ nonce ‖ ciphertext ‖ tag`, the spent `jti` as associated
/// data (a blob moved under another token's key does not open).
pub fn seal(refresh_token: &str, jti: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let key = key_for(refresh_token)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError)?;
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + 16);
    sealed.push(BLOB_VERSION);
    sealed.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(jti.as_bytes()),
        &mut body,
    )
    .map_err(|_| SealError)?;
    sealed.extend_from_slice(&body);
    Ok(sealed)
}

/// Opens a blob [`seal`] made for the same `refresh_token` and `jti`.
pub fn open(refresh_token: &str, jti: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let (&version, rest) = blob.split_first().ok_or(SealError)?;
    if version != BLOB_VERSION || rest.len() < NONCE_LEN {
        return Err(SealError);
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
    let key = key_for(refresh_token)?;
    let mut body = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(jti.as_bytes()), &mut body)
        .map_err(|_| SealError)?
        .len();
    body.truncate(len);
    Ok(body)
}

/// HKDF-SHA256 of the refresh token's bytes: the key exists only where
/// the token is presented, never in Redis.
fn key_for(refresh_token: &str) -> Result<LessSafeKey, SealError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(refresh_token.as_bytes());
    let okm = prk
        .expand(&[HKDF_INFO], &CHACHA20_POLY1305)
        .map_err(|_| SealError)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

const BLOB_VERSION: u8 = 1;
const HKDF_SALT: &[u8] = b"clawgate refresh grace copy";
const HKDF_INFO: &[u8] = b"chacha20-poly1305 v1";
/// Scheduling slack of [`spend_blocking`] past `command_timeout`.
const BRIDGE_SLACK: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_pair_opens_only_with_its_token_and_jti() {
        let sealed = seal("refresh-a", "jti-1", b"the pair").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"the pair"));
        assert_eq!(
            open("refresh-a", "jti-1", &sealed).unwrap().as_slice(),
            b"the pair"
        );
        assert_eq!(open("refresh-b", "jti-1", &sealed), Err(SealError));
        assert_eq!(open("refresh-a", "jti-2", &sealed), Err(SealError));
        assert_eq!(open("refresh-a", "jti-1", &sealed[..10]), Err(SealError));
        assert_eq!(open("refresh-a", "jti-1", &[]), Err(SealError));
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(open("refresh-a", "jti-1", &tampered), Err(SealError));
        // A fresh nonce each time.
        assert_ne!(seal("refresh-a", "jti-1", b"the pair").unwrap(), sealed);
    }

    #[test]
    fn outside_a_runtime_the_bridge_answers_nothing() {
        let result = crate::gateway::cluster::wait_bounded(Duration::from_millis(10), async { 1 });
        assert_eq!(result, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_bridge_gives_up_at_its_deadline() {
        let answer = tokio::task::spawn_blocking(|| {
            let started = std::time::Instant::now();
            let result = crate::gateway::cluster::wait_bounded(Duration::from_millis(50), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                1
            });
            (result, started.elapsed())
        })
        .await
        .unwrap();
        assert_eq!(answer.0, None);
        assert!(answer.1 < Duration::from_secs(1), "{:?}", answer.1);
        let quick = tokio::task::spawn_blocking(|| {
            crate::gateway::cluster::wait_bounded(Duration::from_secs(5), async { 7 })
        })
        .await
        .unwrap();
        assert_eq!(quick, Some(7));
    }
}
