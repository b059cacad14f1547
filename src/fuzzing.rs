//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz). Each one runs
//! the code path the server runs on untrusted bytes, then checks a few
//! invariants that must hold for every input; a broken invariant panics,
//! which the fuzzer reports as a crash.
//!
//! The token target verifies against a real [`KeyRing`] holding one fixed
//! throwaway key ([`FUZZ_SECRET_KEY`]), at a fixed time ([`FUZZ_NOW_UNIX`]),
//! so the committed seed tokens (signed with that key) stay valid and the
//! fuzzer starts from inputs that reach the claim checks.
//!
//! Not part of the API: the module exists for `fuzz/` and may change at any
//! time.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, ConfigError, ReplayConfig};
use crate::gateway::replay_protection::{ReplayError, ReplayGuard, fuzz_parse_headers};
use crate::gateway::session_manager::binding::BindingError;
use crate::gateway::session_token::keyring::{self, KeyError, KeyRing};
use crate::gateway::session_token::{self, TokenError, TokenPolicy, TokenType};
use crate::secret_file::{ensure_private_dir, write_secret};

/// Bearer token bytes → `session_token::verify_at`, as the auth layer runs
/// it (and as `/auth/refresh` runs it for refresh tokens).
///
/// Returns `None` for input that is not UTF-8 (an HTTP header value that is
/// not visible ASCII never reaches the verifier), else the outcome of
/// verifying it as a session token, or as a refresh token when it is one.
///
/// # Panics
///
/// When the fuzz key ring cannot be built (see [`fuzz_key_ring`]), or when
/// an invariant breaks: a verified token must also pass
/// [`session_token::parse_untrusted`], carry the expected `typ` and be
/// unexpired; a refused token must be refused as a rejection (401), never
/// as a server failure.
pub fn token_parse(data: &[u8]) -> Option<Result<TokenType, TokenError>> {
    let token = std::str::from_utf8(data).ok()?;
    let ring = fuzz_key_ring();
    let policy = fuzz_policy();
    let now = fuzz_now();
    // The keyless checks alone, on every input: claim shapes get fuzzed even
    // where the signature would stop the full path.
    let untrusted = session_token::parse_untrusted(token);
    let outcome = match session_token::verify_at(ring, &policy, token, TokenType::Session, now) {
        Err(TokenError::WrongType) => {
            session_token::verify_at(ring, &policy, token, TokenType::Refresh, now)
        }
        other => other,
    };
    match &outcome {
        Ok(claims) => {
            assert!(untrusted.is_ok(), "verified token fails parse_untrusted");
            assert!(
                claims.exp() > now - policy.leeway,
                "verified an expired token"
            );
            assert_eq!(claims.kid(), ring_kid(ring), "verified with another key");
        }
        Err(e) => assert!(e.is_rejection(), "token refused as a server error: {e:?}"),
    }
    Some(outcome.map(|claims| claims.token_type()))
}

/// Replay headers → `ReplayGuard::check_bytes_at` on one guard shared by
/// all inputs, as one gateway's guard sees every request.
///
/// The input is `nonce` `\n` `timestamp` (raw header bytes); with no `\n`,
/// the whole input is the nonce and the timestamp header is absent.
///
/// # Panics
///
/// When an invariant breaks: the full check fails exactly as the header
/// parse does on malformed headers, and an accepted pair is refused as a
/// replay when presented again.
pub fn replay_headers(data: &[u8]) -> Result<(), ReplayError> {
    let (nonce, timestamp) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let guard = fuzz_replay_guard();
    let now = FUZZ_NOW_UNIX;
    let parsed = fuzz_parse_headers(Some(nonce), timestamp);
    let outcome = guard.check_bytes_at(FUZZ_SESSION, Some(nonce), timestamp, now);
    if let Err(e) = parsed {
        assert_eq!(outcome, Err(e), "check and parse disagree");
    }
    if outcome.is_ok() {
        let again = guard.check_bytes_at(FUZZ_SESSION, Some(nonce), timestamp, now);
        assert_eq!(again, Err(ReplayError::Replayed), "replay accepted");
    }
    outcome
}

/// Key file content → `keyring::parse_key_file`, as a keys-directory scan
/// runs it on every `*.key` file.
///
/// # Errors
///
/// The reason the content is not a usable key file.
pub fn paserk_file(data: &[u8]) -> Result<(), KeyError> {
    let parsed = keyring::parse_key_file(data);
    if let Err(e) = &parsed {
        // The message is what an operator sees; rendering it must not fail.
        drop(e.to_string());
    }
    parsed
}

/// Config file bytes → `Config::from_toml`, as `clawgate serve` and
/// `config check` run it. `None` for input that is not UTF-8 (the loader
/// reads the file as a string and fails before parsing).
///
/// # Panics
///
/// When an accepted configuration fails its own validation.
pub fn config_file(data: &[u8]) -> Option<Result<Config, ConfigError>> {
    let text = std::str::from_utf8(data).ok()?;
    let parsed = Config::from_toml(text);
    match &parsed {
        Ok(config) => assert!(
            config.validate().is_ok(),
            "accepted config fails validation"
        ),
        // The one-line message `main` prints; rendering it must not fail.
        Err(e) => drop(e.to_string()),
    }
    Some(parsed)
}

/// Header block → `auth::bearer_token` (`Authorization`, or the
/// `clawgate.bearer` WebSocket subprotocol offer), then the proxy's rewrite
/// of the same headers. Input: lines `name: value`, `\n`-separated. Returns
/// whether a token was found.
///
/// # Panics
///
/// When an invariant breaks; see
/// [`gateway::http::fuzzing::bearer`](crate::gateway::http::fuzzing::bearer).
pub fn bearer_token(data: &[u8]) -> bool {
    crate::gateway::http::fuzzing::bearer(data)
}

/// `Clawgate-Proof` header bytes → `auth::proof_header` →
/// `ProofChecker::check_at` for a session bound to the fuzz key, as the
/// auth layer runs it for a key-bound token. `None` for bytes that cannot
/// be a header value.
///
/// # Panics
///
/// When an invariant breaks; see
/// [`gateway::http::fuzzing::proof`](crate::gateway::http::fuzzing::proof).
pub fn proof_header(data: &[u8]) -> Option<Result<(), BindingError>> {
    crate::gateway::http::fuzzing::proof(data)
}

/// Flag byte + header block → the proxy's request-header rewrite, with
/// the invariant asserted inside: no header the gateway owns or trusts
/// reaches the upstream under any spelling unless the gateway set it.
///
/// # Panics
///
/// When an invariant breaks; see
/// [`gateway::http::fuzzing::request_headers`](crate::gateway::http::fuzzing::request_headers).
pub fn request_headers(data: &[u8]) -> bool {
    crate::gateway::http::fuzzing::request_headers(data)
}

/// The key ring the token target verifies against: [`FUZZ_SECRET_KEY`] as
/// the signer. Built once per process from a private temporary directory,
/// which is removed again once loaded (the ring keeps its keys in memory
/// and is never reloaded).
///
/// # Panics
///
/// When the temporary directory or the key file cannot be written: a fuzz
/// run without its key ring would exercise nothing, so it stops loudly.
pub fn fuzz_key_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("clawgate-fuzz-keys-{}", std::process::id()));
        let ring = load_ring(&dir);
        // Ignored: a leftover directory holds only the public throwaway key.
        let _ = std::fs::remove_dir_all(&dir);
        ring.unwrap_or_else(|e| panic!("fuzz key ring in {}: {e}", dir.display()))
    })
}

/// The token policy of the fuzz targets: the default `[tokens]` section.
pub fn fuzz_policy() -> TokenPolicy {
    TokenPolicy::from_config(&Config::default().tokens)
}

/// [`FUZZ_NOW_UNIX`] as a `SystemTime`.
pub fn fuzz_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FUZZ_NOW_UNIX)
}

fn load_ring(dir: &Path) -> Result<KeyRing, KeyError> {
    let io = |source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    // A directory of an earlier process that had this pid: start clean.
    let _ = std::fs::remove_dir_all(dir);
    ensure_private_dir(dir).map_err(io)?;
    let file = dir.join(FUZZ_KEY_FILE);
    write_secret(&file, FUZZ_SECRET_KEY.as_bytes()).map_err(io)?;
    KeyRing::open(dir)
}

fn ring_kid(ring: &KeyRing) -> String {
    ring.signer()
        .map(|k| k.kid().to_owned())
        .unwrap_or_default()
}

fn fuzz_replay_guard() -> &'static ReplayGuard {
    static GUARD: OnceLock<ReplayGuard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let config = ReplayConfig {
            max_nonces: FUZZ_MAX_NONCES,
            ..ReplayConfig::default()
        };
        ReplayGuard::new(&config, fuzz_policy().leeway)
    })
}

/// The fuzz targets' signing key, a PASERK `k4.secret`. PUBLIC AND
/// THROWAWAY: it is published here and in `fuzz/corpus`, so a token it
/// signs proves nothing. It exists only so the committed seed tokens verify;
/// never put it in a keys directory.
pub const FUZZ_SECRET_KEY: &str = "k4.secret.1swANCLkbBjsNqna0B30LxeVCS5tXMt4g2rawkMdenRh4H-AjA3gT_pckhyvX8DnM4SaB6hZx4Ye8RAjN2agLA\n";
/// The fuzz targets' wall clock: 2026-01-01T00:00:00Z. Fixed, so the seed
/// tokens and replay timestamps in `fuzz/corpus` never go stale.
pub const FUZZ_NOW_UNIX: u64 = 1_767_225_600;
/// Session id the replay target checks nonces under.
pub const FUZZ_SESSION: &str = "fuzz-session";
/// Activated (signing) key file name, activated a day before [`FUZZ_NOW_UNIX`].
const FUZZ_KEY_FILE: &str = "1767139200-fuzz.key";
/// Nonce capacity of the shared replay guard: 65,536 × ≈ 400 bytes ≈ 26 MB,
/// well inside libFuzzer's 2 GB RSS limit. A long run fills it, after which
/// the fail-closed capacity path is fuzzed too.
const FUZZ_MAX_NONCES: u64 = 65_536;

#[cfg(test)]
mod tests;
