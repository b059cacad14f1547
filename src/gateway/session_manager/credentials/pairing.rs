//! The one-time pairing code printed at start-up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{ClientAddrKey, CredentialError, client_addr_key};
use crate::config::AuthConfig;

/// A one-time code, exchanged once for tokens at `/auth/pair`.
///
/// Twelve characters from the 32-symbol Crockford alphabet, shown as three
/// groups of four (`7KQ2-M9XD-4HTB`): 12 × 5 = 60 bits from the OS random
/// generator.
///
/// Lockouts are per client address (an IPv6 /64 counts as one): after
/// `pairing_max_attempts_per_client` wrong codes (5) that address is
/// refused for `pairing_lockout` (15 minutes), while the owner pairs from
/// another. A global backstop locks pairing for everyone after
/// `pairing_max_attempts` wrong codes from all addresses together (50):
/// an online attacker with any number of addresses gets at most 4,800
/// guesses a day against 2⁶⁰ codes.
///
/// The value is reachable only through [`reveal`](Self::reveal); `Debug`
/// prints the type name, and the bytes are zeroized on drop.
pub struct PairingCode {
    /// Canonical form (no dashes, upper case): what offers are compared to.
    code: Zeroizing<[u8; CODE_LEN]>,
    /// `XXXX-XXXX-XXXX`, for the start-up line.
    display: Zeroizing<String>,
    max_attempts: u32,
    max_attempts_per_client: u32,
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
            max_attempts_per_client: config.pairing_max_attempts_per_client,
            lockout: config.pairing_lockout,
            state: Mutex::new(State::default()),
        })
    }

    /// The code as printed at start-up (`XXXX-XXXX-XXXX`). The only way to
    /// read it: call it once, for the `pairing code: …` line.
    pub fn reveal(&self) -> &str {
        &self.display
    }

    /// Redeems `offered` from `client` at `now_unix`: succeeds once;
    /// refuses every offer, right or wrong, while `client` or pairing as a
    /// whole is locked out.
    ///
    /// Case, dashes and spaces do not matter, and the look-alikes `O`, `I`
    /// and `L` read as `0`, `1` and `1`.
    pub fn redeem_at(
        &self,
        offered: &str,
        client: IpAddr,
        now_unix: u64,
    ) -> Result<(), PairingError> {
        // The whole check runs under the lock: concurrent guesses are
        // counted one by one, so no burst gets more than the limits.
        let mut state = self.lock();
        if state.used {
            return Err(PairingError::AlreadyUsed);
        }
        // Global backstop first: while it holds, nobody may guess.
        state.global.check(now_unix)?;
        let key = state.client_key(client_addr_key(client), now_unix, self.lockout);
        state.clients.entry(key).or_default().check(now_unix)?;
        if self.matches(offered) {
            state.used = true;
            state.clients = HashMap::new();
            return Ok(());
        }
        let lockout = self.lockout;
        let client_locked = state.clients.entry(key).or_default().fail(
            now_unix,
            self.max_attempts_per_client,
            lockout,
        );
        let global_locked = state.global.fail(now_unix, self.max_attempts, lockout);
        if client_locked || global_locked {
            if global_locked {
                tracing::warn!(
                    event = "pairing_locked_globally",
                    "wrong pairing codes from many addresses; pairing locked for everyone"
                );
            }
            return Err(PairingError::LockedOut {
                retry_after: lockout,
            });
        }
        Err(PairingError::Invalid)
    }

    /// A fresh, unused code with the value `text` (written by `clawgate
    /// pairing`) and this code's lockout policy; `None` if `text` is not
    /// a code.
    pub fn replaced_by(&self, text: &str) -> Option<Self> {
        let code = normalize(text)?;
        let display = group(&code);
        Some(Self {
            code,
            display,
            max_attempts: self.max_attempts,
            max_attempts_per_client: self.max_attempts_per_client,
            lockout: self.lockout,
            state: Mutex::new(State::default()),
        })
    }

    /// Whether `text` is this code (constant time).
    pub fn is(&self, text: &str) -> bool {
        self.matches(text)
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
#[non_exhaustive]
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
    /// Wrong codes from everyone: the backstop.
    global: Attempts,
    /// Wrong codes per client address, at most [`MAX_CLIENTS`] entries.
    clients: HashMap<ClientAddrKey, Attempts>,
}

impl State {
    /// The key `client` is counted under: its own, or, when the table is
    /// full even after dropping entries that no longer matter, one shared
    /// overflow entry (stricter for newcomers, never a fresh budget).
    fn client_key(&mut self, client: ClientAddrKey, now: u64, lockout: Duration) -> ClientAddrKey {
        if self.clients.contains_key(&client) || self.clients.len() < MAX_CLIENTS {
            return client;
        }
        self.clients.retain(|_, a| a.matters_at(now, lockout));
        if self.clients.len() < MAX_CLIENTS {
            client
        } else {
            OVERFLOW_CLIENT
        }
    }
}

/// Wrong codes from one source since its last lockout.
#[derive(Default)]
struct Attempts {
    failures: u32,
    last_failure: u64,
    locked_until: Option<u64>,
}

impl Attempts {
    /// Refuses while locked out; starts over once a lockout has ended.
    fn check(&mut self, now: u64) -> Result<(), PairingError> {
        if let Some(until) = self.locked_until {
            if now < until {
                return Err(PairingError::LockedOut {
                    retry_after: Duration::from_secs(until - now),
                });
            }
            *self = Self::default();
        }
        Ok(())
    }

    /// Counts one wrong code; true when it starts a lockout.
    fn fail(&mut self, now: u64, max: u32, lockout: Duration) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        if self.failures >= max {
            self.locked_until = Some(now.saturating_add(lockout.as_secs()));
            return true;
        }
        false
    }

    /// Whether forgetting this entry could hand out a fresh budget: it is
    /// locked, or failed within the last lockout period.
    fn matters_at(&self, now: u64, lockout: Duration) -> bool {
        self.locked_until.is_some_and(|until| now < until)
            || now.saturating_sub(self.last_failure) < lockout.as_secs()
    }
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

/// Most client addresses tracked at once (≈ 100 bytes each: ≈ 1 MB).
const MAX_CLIENTS: usize = 10_000;
/// Where newcomers are counted while the table is full.
const OVERFLOW_CLIENT: ClientAddrKey = ClientAddrKey::Overflow;
/// Crockford base32: digits and upper-case letters without I, L, O and U,
/// so nothing reads as something else.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code: 12 × 5 bits = 60 bits.
const CODE_LEN: usize = 12;
/// Longest offer looked at: a code with separators is 14 bytes; anything
/// much longer is not a code.
const MAX_OFFER_BYTES: usize = 64;
