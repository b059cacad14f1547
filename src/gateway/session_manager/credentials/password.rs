//! argon2id password hashes: creating them and checking logins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, Version};
use ring::rand::{SecureRandom, SystemRandom};

use super::CredentialError;
use crate::config::{self, UserConfig};

/// argon2id parameters for new hashes: the OWASP Password Storage Cheat
/// Sheet's first recommendation, m = 19 MiB (19,456 KiB), t = 2 iterations,
/// p = 1 lane, with a 16-byte random salt and a 32-byte output. One hash
/// costs ≈ 20–40 ms of one core in a release build.
pub const PRODUCTION_PARAMS: Params = match Params::new(19_456, 2, 1, Some(32)) {
    Ok(params) => params,
    // Evaluated at compile time: a bad constant fails the build, not a login.
    Err(_) => panic!("invalid argon2 parameters"),
};

/// Hashes `password` with argon2id and [`PRODUCTION_PARAMS`], returning the
/// PHC string for `[[auth.users]] password_hash`.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    hash_with(password, PRODUCTION_PARAMS)
}

/// Hashes `password` with the weakest argon2id parameters (8 KiB, one
/// pass): for other modules' tests only, where debug builds would spend a
/// second per production hash. Never use it for a real password.
#[doc(hidden)]
pub fn insecure_hash_password_for_tests(password: &str) -> Result<String, CredentialError> {
    let params = Params::new(Params::MIN_M_COST, 1, 1, Some(32))
        .map_err(|_| CredentialError::Hashing(argon2::password_hash::Error::ParamsInvalid))?;
    hash_with(password, params)
}

/// A user whose password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The login name (the token's `sub`).
    pub name: String,
    /// The scopes configured for this user.
    pub scopes: Vec<String>,
}

/// The configured users' password hashes, parsed once at start-up.
///
/// Verification is CPU-bound (one argon2id run, tens of milliseconds): call
/// [`verify`](Self::verify) from a blocking context in async code.
pub struct PasswordVerifier {
    pub(super) users: HashMap<String, UserEntry>,
    /// Stands in for an unknown user's hash; matches no password.
    pub(super) dummy: PasswordHash,
    argon2: Argon2<'static>,
    runs: AtomicU64,
}

impl PasswordVerifier {
    /// Parses every user's hash. A hash that is not a usable argon2id PHC
    /// string is an error naming the user.
    pub fn new(users: &[UserConfig]) -> Result<Self, CredentialError> {
        let mut map = HashMap::with_capacity(users.len());
        for user in users {
            let entry = UserEntry {
                hash: parse_user_hash(user)?,
                scopes: user.scopes.clone(),
            };
            map.insert(user.name.clone(), entry);
        }
        let template = users.first().and_then(|u| map.get(&u.name));
        let dummy = dummy_hash(template.map(|e| &e.hash))?;
        warn_on_mixed_params(users, &map, &dummy);
        Ok(Self {
            users: map,
            dummy,
            argon2: Argon2::default(),
            runs: AtomicU64::new(0),
        })
    }

    /// Checks `password` for `username`.
    ///
    /// An unknown user is checked against a dummy hash with the same
    /// parameters: both paths run exactly one argon2id verification and
    /// return the same error, so neither the response nor its timing tells
    /// which user names exist (OWASP Authentication Cheat Sheet).
    pub fn verify(&self, username: &str, password: &str) -> Result<VerifiedUser, CredentialError> {
        let user = self.users.get(username);
        let hash = user.map_or(&self.dummy, |u| &u.hash);
        // An over-long password still costs one argon2 run (same path), then fails.
        let acceptable = password.len() <= MAX_PASSWORD_BYTES;
        let candidate = if acceptable { password.as_bytes() } else { b"" };
        let matched = self.run_argon2(candidate, hash) && acceptable;
        match user {
            Some(entry) if matched => Ok(VerifiedUser {
                name: username.to_owned(),
                scopes: entry.scopes.clone(),
            }),
            _ => Err(CredentialError::InvalidCredentials),
        }
    }

    /// argon2id verifications run so far (for metrics, and for tests that
    /// assert both failure paths do the same work).
    pub fn argon2_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn run_argon2(&self, password: &[u8], hash: &PasswordHash) -> bool {
        self.runs.fetch_add(1, Ordering::Relaxed);
        // argon2 compares the outputs in constant time.
        self.argon2.verify_password(password, hash).is_ok()
    }
}

impl std::fmt::Debug for PasswordVerifier {
    // Hashes are offline-attackable: only the user count is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordVerifier")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

pub(super) struct UserEntry {
    pub(super) hash: PasswordHash,
    scopes: Vec<String>,
}

pub(super) fn hash_with(password: &str, params: Params) -> Result<String, CredentialError> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    // The salt comes from the OS random generator (16 bytes).
    let hash = argon2
        .hash_password(password.as_bytes())
        .map_err(CredentialError::Hashing)?;
    Ok(hash.to_string())
}

/// The rule is the configuration's ([`config::parse_password_hash`]); a
/// validated configuration never fails here.
fn parse_user_hash(user: &UserConfig) -> Result<PasswordHash, CredentialError> {
    config::parse_password_hash(&user.password_hash).map_err(|problem| CredentialError::BadHash {
        user: user.name.clone(),
        problem,
    })
}

/// A hash with `template`'s parameters (or the production ones) and a random
/// salt and output: verifying any password against it costs the same as a
/// real check and fails (a 2⁻²⁵⁶ chance otherwise).
fn dummy_hash(template: Option<&PasswordHash>) -> Result<PasswordHash, CredentialError> {
    let mut hash = match template {
        Some(t) => t.clone(),
        None => PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(ARGON2_VERSION),
            params: ParamsString::try_from(&PRODUCTION_PARAMS).map_err(CredentialError::Hashing)?,
            salt: None,
            hash: None,
        },
    };
    let out_len = hash.hash.as_ref().map_or(32, Output::len);
    let mut salt = [0u8; 16];
    let mut out = [0u8; Output::MAX_LENGTH];
    let rng = SystemRandom::new();
    rng.fill(&mut salt).map_err(|_| CredentialError::Random)?;
    rng.fill(&mut out).map_err(|_| CredentialError::Random)?;
    let phc = |e| CredentialError::Hashing(argon2::password_hash::Error::from(e));
    hash.salt = Some(Salt::new(&salt).map_err(phc)?);
    hash.hash = Some(Output::new(out.get(..out_len).unwrap_or(&out)).map_err(phc)?);
    Ok(hash)
}

/// Users whose hash parameters differ from the dummy's take a different
/// time to check than an unknown name, which tells an attacker they exist.
fn warn_on_mixed_params(
    users: &[UserConfig],
    map: &HashMap<String, UserEntry>,
    dummy: &PasswordHash,
) {
    for user in users {
        if map
            .get(&user.name)
            .is_some_and(|e| e.hash.params != dummy.params)
        {
            tracing::warn!(
                user = %user.name,
                "password hash parameters differ from the first user's; \
                 re-hash with `clawgate hash-password` so login timing does not reveal user names"
            );
        }
    }
}

/// argon2 version 1.3 (0x13), written `v=19` in PHC strings.
const ARGON2_VERSION: u32 = 0x13;
/// Longest password checked: far above any passphrase, far below the cost
/// of hashing megabytes (the argon2 pre-hash is linear in the input).
const MAX_PASSWORD_BYTES: usize = 1_024;
