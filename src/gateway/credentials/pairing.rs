//! The one-time pairing code printed at start-up.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::CredentialError;
use crate::config::AuthConfig;

/// A one-time code, exchanged once for tokens at `/auth/pair`.
///
/// Twelve characters from the 32-symbol Crockford alphabet, shown as three
/// groups of four (`7KQ2-M9XD-4HTB`): 12 × 5 = 60 bits from the OS random
/// generator. With the default lockout (5 wrong codes, then 15 minutes) an
/// online attacker gets 480 guesses a day against 2⁶⁰ codes.
///
/// The value is reachable only through [`reveal`](Self::reveal); `Debug`
/// prints the type name, and the bytes are zeroized on drop.
pub struct PairingCode {
    /// Canonical form (no dashes, upper case): what offers are compared to.
    code: Zeroizing<[u8; CODE_LEN]>,
    /// `XXXX-XXXX-XXXX`, for the start-up line.
    display: Zeroizing<String>,
    max_attempts: u32,
    lockout: Duration,
    state: Mutex<State>,
}

impl PairingCode {
    /// A fresh code with the `[auth]` lockout policy.
    pub fn generate(config: &AuthConfig) -> Result<Self, CredentialError> {
        let mut random = Zeroizing::new([0u8; 8]);
        SystemRandom::new()
            .fill(random.as_mut())
            .map_err(|_| CredentialError::Random)?;
        let mut bits = Zeroizing::new(u64::from_le_bytes(*random));
        let mut code = Zeroizing::new([0u8; CODE_LEN]);
        for slot in code.iter_mut() {
            // Five bits index a 32-symbol alphabet: uniform, no modulo bias.
            *slot = ALPHABET[(*bits & 0x1f) as usize];
            *bits >>= 5;
        }
        let display = group(&code);
        Ok(Self {
            code,
            display,
            max_attempts: config.pairing_max_attempts,
            lockout: config.pairing_lockout,
            state: Mutex::new(State::default()),
        })
    }

    /// The code as printed at start-up (`XXXX-XXXX-XXXX`). The only way to
    /// read it: call it once, for the `pairing code: …` line.
    pub fn reveal(&self) -> &str {
        &self.display
    }

    /// Redeems `offered` at `now_unix`: succeeds once; refuses every offer,
    /// right or wrong, while locked out.
    ///
    /// Case, dashes and spaces do not matter, and the look-alikes `O`, `I`
    /// and `L` read as `0`, `1` and `1`.
    pub fn redeem_at(&self, offered: &str, now_unix: u64) -> Result<(), PairingError> {
        // The whole check runs under the lock: concurrent guesses are
        // counted one by one, so no burst gets more than `max_attempts`.
        let mut state = self.lock();
        if state.used {
            return Err(PairingError::AlreadyUsed);
        }
        if let Some(until) = state.locked_until {
            if now_unix < until {
                return Err(PairingError::LockedOut {
                    retry_after: Duration::from_secs(until - now_unix),
                });
            }
            *state = State::default();
        }
        if self.matches(offered) {
            state.used = true;
            return Ok(());
        }
        state.failures += 1;
        if state.failures >= self.max_attempts {
            state.locked_until = Some(now_unix.saturating_add(self.lockout.as_secs()));
            return Err(PairingError::LockedOut {
                retry_after: self.lockout,
            });
        }
        Err(PairingError::Invalid)
    }

    /// Whether the code has been redeemed.
    pub fn is_used(&self) -> bool {
        self.lock().used
    }

    fn matches(&self, offered: &str) -> bool {
        let Some(candidate) = normalize(offered) else {
            // Shape checks look only at the offer, never at the code.
            return false;
        };
        // Constant time: how much of a guess is right must not show in timing.
        bool::from(candidate.ct_eq(&self.code[..]))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent; poisoning is harmless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingCode").finish_non_exhaustive()
    }
}

/// Why a pairing code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// The offered code is wrong.
    #[error("invalid pairing code")]
    Invalid,
    /// The code was already exchanged; it works once.
    #[error("the pairing code was already used")]
    AlreadyUsed,
    /// Too many wrong codes: every offer is refused until the lockout ends.
    #[error("too many wrong pairing codes; retry in {} s", retry_after.as_secs())]
    LockedOut {
        /// Time left in the lockout.
        retry_after: Duration,
    },
}

#[derive(Default)]
struct State {
    used: bool,
    failures: u32,
    locked_until: Option<u64>,
}

/// The canonical form of an offer, or `None` if it cannot be a code.
pub(super) fn normalize(offered: &str) -> Option<Zeroizing<[u8; CODE_LEN]>> {
    if offered.len() > MAX_OFFER_BYTES {
        return None;
    }
    let mut out = Zeroizing::new([0u8; CODE_LEN]);
    let mut len = 0;
    for byte in offered.bytes() {
        let c = match byte.to_ascii_uppercase() {
            b'-' | b' ' => continue,
            b'O' => b'0',
            b'I' | b'L' => b'1',
            c => c,
        };
        if !ALPHABET.contains(&c) {
            return None;
        }
        *out.get_mut(len)? = c;
        len += 1;
    }
    (len == CODE_LEN).then_some(out)
}

/// `XXXX-XXXX-XXXX`, built in one allocation that is zeroized on drop
/// (no intermediate copies of the code).
fn group(code: &[u8; CODE_LEN]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(CODE_LEN + 2));
    for (i, &b) in code.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(b));
    }
    out
}

/// Crockford base32: digits and upper-case letters without I, L, O and U,
/// so nothing reads as something else.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code: 12 × 5 bits = 60 bits.
const CODE_LEN: usize = 12;
/// Longest offer looked at: a code with separators is 14 bytes; anything
/// much longer is not a code.
const MAX_OFFER_BYTES: usize = 64;
