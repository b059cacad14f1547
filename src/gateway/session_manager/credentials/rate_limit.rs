//! A fixed-window rate limiter with bounded memory, the login limiter
//! built from two of them, and the client key both limits count under.

use std::net::IpAddr;
use std::time::Duration;

use moka::sync::Cache;

/// Allows `limit` requests per key per one-minute window.
///
/// Used per client address for `/auth/*` and per user name for logins.
/// Windows are fixed: the first request of a key starts one, and the count
/// starts over when a request arrives a minute or more later.
///
/// Memory is bounded: at most 100,000 keys are tracked (≈ 400 bytes
/// each with moka's bookkeeping, so ≈ 40 MB at most), and a key leaves a
/// minute after its last request. When the table is full (a flood from very
/// many addresses), every new key shares one overflow window with the same
/// limit, while keys already tracked keep their own counts. Newcomers are
/// throttled together during a flood rather than tracked counts being
/// evicted, which would hand an attacker a fresh budget.
pub struct RateLimiter {
    limit: u32,
    max_keys: u64,
    windows: Cache<String, Window>,
}

impl RateLimiter {
    /// A limiter allowing `limit_per_minute` requests per key and minute.
    pub fn new(limit_per_minute: u32) -> Self {
        Self::with_max_keys(limit_per_minute, MAX_KEYS)
    }

    /// Counts one request of `key` at `now_unix`; refuses it when the key's
    /// window is used up, saying when the window ends.
    pub fn check_at(&self, key: &str, now_unix: u64) -> Result<(), RetryAfter> {
        let key = if self.windows.contains_key(key) || self.windows.entry_count() < self.max_keys {
            key
        } else {
            OVERFLOW_KEY
        };
        // Atomic per key: concurrent requests of one key are all counted.
        let window = self
            .windows
            .entry_by_ref(key)
            .and_upsert_with(|old| advance(old.map(|e| e.into_value()), now_unix))
            .into_value();
        if window.count <= self.limit {
            Ok(())
        } else {
            let left = (window.start + WINDOW_SECS).saturating_sub(now_unix).max(1);
            Err(RetryAfter(Duration::from_secs(left)))
        }
    }

    /// Runs moka's pending housekeeping (idle expiry, counts) now.
    pub fn run_pending_tasks(&self) {
        self.windows.run_pending_tasks();
    }

    pub(super) fn with_max_keys(limit_per_minute: u32, max_keys: u64) -> Self {
        Self {
            limit: limit_per_minute,
            max_keys,
            // A key idle for a whole window has nothing left to count.
            windows: Cache::builder()
                .time_to_idle(Duration::from_secs(WINDOW_SECS))
                .build(),
        }
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limit_per_minute", &self.limit)
            .field("keys", &self.windows.entry_count())
            .finish()
    }
}

/// Login attempts per user name: per client address, under a higher
/// ceiling per user name from all addresses together.
///
/// Keyed by user alone, a stranger's wrong passwords would lock the user
/// out; keyed by address alone, guessing from many addresses would be
/// unbounded. With the defaults (10 and 100 per minute) a stranger on one
/// address spends only their own budget, and locking a user out takes ten
/// addresses (ten IPv6 /64s) guessing at the full rate.
pub struct LoginLimiter {
    per_client: RateLimiter,
    per_user: RateLimiter,
}

impl LoginLimiter {
    /// `per_client` attempts per user name and client address per minute,
    /// at most `per_user` per user name per minute from everywhere.
    pub fn new(per_client: u32, per_user: u32) -> Self {
        Self {
            per_client: RateLimiter::new(per_client),
            per_user: RateLimiter::new(per_user),
        }
    }

    /// Counts one attempt at `username` from `client` at `now_unix`.
    pub fn check_at(
        &self,
        username: &str,
        client: IpAddr,
        now_unix: u64,
    ) -> Result<(), RetryAfter> {
        // The client key never contains a space, so "<client> <user>" is
        // unambiguous whatever the user name holds.
        let pair = format!("{} {username}", client_addr_key(client));
        // Per client first: a refused stranger does not eat into the
        // user's shared ceiling.
        self.per_client.check_at(&pair, now_unix)?;
        self.per_user.check_at(username, now_unix)
    }

    /// Runs both tables' pending housekeeping now.
    pub fn run_pending_tasks(&self) {
        self.per_client.run_pending_tasks();
        self.per_user.run_pending_tasks();
    }
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("per_client", &self.per_client)
            .field("per_user", &self.per_user)
            .finish()
    }
}

/// What per-client limits count under: an IPv4 address, or the /64 prefix
/// of an IPv6 address (one host usually holds a whole /64, so counting its
/// addresses one by one would hand it 2⁶⁴ budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddrKey {
    /// An IPv4 client (IPv4-mapped IPv6 included).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 client's address.
    V6([u8; 8]),
    /// The shared entry for newcomers while a table is full.
    Overflow,
}

impl std::fmt::Display for ClientAddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(a) => IpAddr::from(*a).fmt(f),
            Self::V6(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", IpAddr::from(full))
            }
            Self::Overflow => f.write_str("overflow"),
        }
    }
}

/// The [`ClientAddrKey`] of `ip`.
pub fn client_addr_key(ip: IpAddr) -> ClientAddrKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => ClientAddrKey::V4(v4.octets()),
        IpAddr::V6(v6) => {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&v6.octets()[..8]);
            ClientAddrKey::V6(prefix)
        }
    }
}

/// A request was refused by a [`RateLimiter`]; retry after the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry in {} s", .0.as_secs())]
pub struct RetryAfter(
    /// Time until the key's window ends (at least one second).
    pub Duration,
);

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    count: u32,
}

fn advance(old: Option<Window>, now: u64) -> Window {
    match old {
        // A clock stepped back counts as the same window (saturating).
        Some(w) if now.saturating_sub(w.start) < WINDOW_SECS => Window {
            start: w.start,
            count: w.count.saturating_add(1),
        },
        _ => Window {
            start: now,
            count: 1,
        },
    }
}

/// Most keys tracked at once: 100,000 distinct clients within a minute is
/// well beyond a single gateway's legitimate `/auth/*` traffic.
const MAX_KEYS: u64 = 100_000;
/// Window length: limits are configured per minute.
const WINDOW_SECS: u64 = 60;
/// Key of the shared window for newcomers while the table is full. No
/// address contains a NUL byte; a user name that did would only share the
/// overflow window, which is stricter, never looser.
const OVERFLOW_KEY: &str = "\0overflow";
