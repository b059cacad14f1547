//! Replay protection for unsafe methods: a nonce and a timestamp per request.
//!
//! A protected request carries `X-Request-Nonce` (at least 128 random bits,
//! base64url without padding) and `X-Request-Timestamp` (Unix seconds). The
//! guard accepts a request when
//!
//! 1. both headers parse (bounded lengths, canonical encodings),
//! 2. the timestamp lies within `window + leeway` of now, in either direction
//!    (leeway absorbs clock skew between client and gateway, PITFALLS K5), and
//! 3. the nonce has not been seen for the same session while that timestamp
//!    could still be accepted.
//!
//! The nonce cache is scoped per session: the same nonce under another session
//! is a different request. Every entry lives exactly as long as its timestamp
//! stays acceptable, so a replay after the entry is gone is already refused as
//! stale by step 2.
//!
//! The cache is never size-evicted (PITFALLS R4): evicting a live nonce would
//! reopen the replay window. When `max_nonces` live entries exist, new
//! protected requests are refused with [`ReplayError::CapacityExhausted`]
//! (the server answers 503) until entries expire: fail closed.
//!
//! Fair shares: one session may hold at most `max_nonces_per_session` live
//! entries and one subject (all its sessions, revoked ones included) at
//! most `max_nonces_per_subject`; past its share a session is refused with
//! [`ReplayError::QuotaExhausted`] (429) while everyone else keeps the rest
//! of the capacity. The global cap stays as the fail-closed backstop.
//!
//! Restarts: the cache lives in memory, so a new process has forgotten every
//! nonce. [`ReplayGuard::refuse_before`] sets a floor under acceptable
//! timestamps (the gateway sets it to its start second, see
//! [`restart_floor`]): a request the previous process accepted carries a
//! timestamp below the floor and is refused as stale.

mod restart;
mod shares;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use self::shares::{Owners, Shares};
use crate::config::ReplayConfig;
use crate::gateway::cluster::nonces::Claim;
pub use crate::gateway::cluster::nonces::FleetNonce;

pub use restart::{MARKER_FILE, RestartFloor, restart_floor};

/// Checks nonce + timestamp pairs; one per gateway, shared by all requests.
pub struct ReplayGuard {
    enabled: bool,
    methods: Vec<String>,
    /// `window + leeway`: how far a timestamp may be from now, either way.
    acceptance: u64,
    max_nonces: u64,
    /// Live entries, counted exactly: reserved before an insert, released by
    /// the eviction listener when moka drops or replaces an entry.
    live: Arc<AtomicU64>,
    /// Live entries per session and per subject, against their shares.
    shares: Arc<Shares>,
    /// Timestamps below this Unix second are stale whatever the window
    /// says (0: no floor). See [`Self::refuse_before`].
    floor: AtomicU64,
    seen: Cache<NonceKey, NonceEntry>,
    /// The shared server in `[cluster] mode = "redis"`; `None` standalone.
    cluster: Option<Arc<crate::gateway::cluster::Cluster>>,
}

/// Who spends a nonce: the session (it scopes the nonce) and, when known,
/// the subject the session belongs to. Each has its own share of capacity.
#[derive(Debug, Clone, Copy)]
pub struct NonceOwner<'a> {
    /// The session id (`sid`).
    pub session_id: &'a str,
    /// The session's subject (`sub`); `None` charges the session only.
    pub subject: Option<&'a str>,
}

impl ReplayGuard {
    /// A guard for `config`; `leeway` is the token clock-skew allowance
    /// (`[tokens] leeway`), added to the window on both sides.
    ///
    /// Capacity arithmetic for the defaults (see also [`NONCE_ENTRY_BYTES`]):
    /// `max_nonces` = 250,000 over a 300 s window (+30 s leeway; an entry
    /// lives until its timestamp turns stale, 330 s for a current timestamp)
    /// sustains 250,000 / 330 ≈ 750 protected requests per second; bursts
    /// above that are refused with 503 until entries expire. At ≈ 420 bytes
    /// per entry a full cache holds ≈ 105 MB. Size it as peak
    /// protected requests per second × 330 s (1,000,000 ≈ 420 MB ≈ 3,000/s).
    pub fn new(config: &ReplayConfig, leeway: Duration) -> Self {
        let live = Arc::new(AtomicU64::new(0));
        let shares = Arc::new(Shares::new(
            config.max_nonces_per_session,
            config.max_nonces_per_subject,
        ));
        let (released, released_shares) = (Arc::clone(&live), Arc::clone(&shares));
        // No max_capacity: size eviction would forget live nonces (R4).
        let seen = Cache::builder()
            .expire_after(NonceExpiry)
            // Every removal (expired, replaced, explicit) frees one slot and
            // its owners' shares. Runs on the thread that drives moka, which
            // never holds the shares lock while doing so.
            .eviction_listener(move |_key, value: NonceEntry, _cause: RemovalCause| {
                released.fetch_sub(1, Ordering::AcqRel);
                released_shares.release(&value.owners);
            })
            .build();
        Self {
            enabled: config.enabled,
            methods: config.methods.clone(),
            acceptance: config.window.saturating_add(leeway).as_secs(),
            max_nonces: config.max_nonces,
            live,
            shares,
            floor: AtomicU64::new(0),
            seen,
            cluster: None,
        }
    }

    /// Every nonce this replica still holds as spent, with the time left
    /// until its timestamp turns stale (plus the fleet's clock slack): what
    /// a Redis that lost its data must learn again, or a replay of a
    /// nonce spent before the wipe would pass on another replica.
    pub fn nonces_to_reseed(&self, now_unix: u64) -> Vec<([u8; 16], Duration)> {
        self.seen
            .iter()
            .filter(|(_, entry)| entry.expires_at > now_unix)
            .map(|(key, entry)| {
                let ttl = crate::gateway::cluster::nonces::fleet_ttl(entry.expires_at, now_unix);
                (*key, ttl)
            })
            .collect()
    }

    /// Shares spent nonces with the other replicas through `cluster`
    /// (`[cluster] mode = "redis"`).
    #[must_use]
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::gateway::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Whether requests with `method` must carry the replay headers.
    ///
    /// Any spelling of a protected method is protected: methods are
    /// case-sensitive (RFC 9110 §9.1), so `post` is formally another method,
    /// but WSGI, Rack and others fold the case and run their POST handler
    /// for it. Protecting every case (rather than refusing non-canonical
    /// names) also covers configured extension methods in any case, and
    /// refuses nothing a client may legally send.
    pub fn applies_to(&self, method: &str) -> bool {
        self.enabled && self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Refuses, as [`ReplayError::Stale`], every timestamp below
    /// `floor_unix` from now on. After a restart the nonce cache is empty:
    /// the floor (the process's start second, or the one after) keeps
    /// requests the previous process accepted from being accepted again.
    /// Once `window + leeway` has passed the floor is implied by the window.
    pub fn refuse_before(&self, floor_unix: u64) {
        self.floor.store(floor_unix, Ordering::Release);
    }

    /// Checks one request of `session_id` at wall-clock `now_unix`.
    ///
    /// Order: parse both headers → timestamp window → nonce cache, so a
    /// malformed or stale request never takes a cache slot.
    pub fn check_at(
        &self,
        session_id: &str,
        nonce: Option<&str>,
        timestamp: Option<&str>,
        now_unix: u64,
    ) -> Result<(), ReplayError> {
        self.check_bytes_at(
            session_id,
            nonce.map(str::as_bytes),
            timestamp.map(str::as_bytes),
            now_unix,
        )
    }

    /// [`check_at`](Self::check_at) on raw header bytes (as an HTTP header
    /// value hands them over, not necessarily UTF-8).
    pub fn check_bytes_at(
        &self,
        session_id: &str,
        nonce: Option<&[u8]>,
        timestamp: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<(), ReplayError> {
        let owner = NonceOwner {
            session_id,
            subject: None,
        };
        self.check_bytes_for(owner, nonce, timestamp, now_unix)
    }

    /// [`check_bytes_at`](Self::check_bytes_at) charging the nonce to
    /// `owner`'s session and subject shares.
    ///
    /// In cluster mode the fleet's answer is needed, which this call cannot
    /// wait for: a nonce the local cache accepts is refused as
    /// [`ReplayError::Unavailable`] (fail closed). Use
    /// [`begin_bytes_for`](Self::begin_bytes_for) there.
    pub fn check_bytes_for(
        &self,
        owner: NonceOwner<'_>,
        nonce: Option<&[u8]>,
        timestamp: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<(), ReplayError> {
        match self.begin_bytes_for(owner, nonce, timestamp, now_unix)? {
            None => Ok(()),
            // Accepting on the local cache alone would let the same request
            // through once per replica.
            Some(_unconfirmed) => Err(ReplayError::Unavailable),
        }
    }

    /// The local checks of [`check_bytes_for`](Self::check_bytes_for)
    /// (parse, window, the local cache: a replay seen here is refused with
    /// no round trip). Standalone, `Ok(None)` accepts the request. In
    /// cluster mode `Ok(Some(claim))`: the request is accepted only once
    /// [`FleetNonce::confirm`] says [`Claim::Fresh`](crate::gateway::cluster::nonces::Claim::Fresh)
    /// (see [`confirm_fleet`]).
    pub fn begin_bytes_for(
        &self,
        owner: NonceOwner<'_>,
        nonce: Option<&[u8]>,
        timestamp: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<Option<FleetNonce>, ReplayError> {
        let parsed = parse_headers(nonce, timestamp)?;
        self.check_window(parsed.timestamp, now_unix)?;
        let (key, expires_at) = self.remember(owner, &parsed, now_unix)?;
        // Order: the local insert comes first (it is the fast duplicate
        // filter for this replica and what a reseed replays into Redis),
        // then the fleet decides. The Redis key lives as long as the local
        // entry, plus slack for the other replicas' clocks.
        Ok(self.cluster.as_ref().map(|cluster| {
            let ttl = crate::gateway::cluster::nonces::fleet_ttl(expires_at, now_unix);
            FleetNonce::new(Arc::clone(cluster), key, ttl)
        }))
    }

    /// Whether nonces are shared with other replicas (`[cluster] mode =
    /// "redis"`): accepted requests then need [`confirm_fleet`].
    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Live nonce entries (for metrics). Exact, but entries already past
    /// their expiry count until moka's housekeeping removes them.
    pub fn live_nonces(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// Runs moka's pending housekeeping (expiry, listener calls) now.
    pub fn run_pending_tasks(&self) {
        self.seen.run_pending_tasks();
    }

    fn check_window(&self, timestamp: u64, now: u64) -> Result<(), ReplayError> {
        // Below the restart floor: a previous process may have accepted it,
        // and this one has not seen its nonce.
        if timestamp.saturating_add(self.acceptance) < now
            || timestamp < self.floor.load(Ordering::Acquire)
        {
            return Err(ReplayError::Stale);
        }
        if timestamp > now.saturating_add(self.acceptance) {
            return Err(ReplayError::Future);
        }
        Ok(())
    }

    fn remember(
        &self,
        owner: NonceOwner<'_>,
        parsed: &Parsed,
        now: u64,
    ) -> Result<(NonceKey, u64), ReplayError> {
        let key = nonce_key(owner.session_id, &parsed.nonce[..parsed.nonce_len]);
        // A live entry is a replay whatever the capacity: look before
        // reserving, so a replay at capacity (or past the owner's share) is
        // told as the replay it is, not as a full cache (found by fuzzing).
        // The insert below stays the atomic decision between racing twins.
        if self.seen.get(&key).is_some_and(|old| old.expires_at > now) {
            return Err(ReplayError::Replayed);
        }
        let owners = Owners::of(owner.session_id, owner.subject);
        self.reserve_slot(&owners)?;
        // First unix second at which `timestamp` is stale: the entry must
        // cover every second up to and including timestamp + acceptance.
        let expires_at = parsed
            .timestamp
            .saturating_add(self.acceptance)
            .saturating_add(1);
        let entry = NonceEntry {
            ttl: Duration::from_secs(expires_at.saturating_sub(now)),
            expires_at,
            owners,
        };
        // Atomic per key (moka coalesces concurrent inserts of one key): of
        // two requests with one nonce, exactly one sees a fresh entry. An
        // entry that is expired by the wall clock but not yet by moka's own
        // monotonic clock is replaced, not treated as a replay.
        let outcome = self
            .seen
            .entry(key)
            .or_insert_with_if(|| entry, |old| old.expires_at <= now);
        if outcome.is_fresh() {
            Ok((key, expires_at))
        } else {
            // Nothing was inserted: give the reserved slot and shares back.
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.shares.release(&owners);
            Err(ReplayError::Replayed)
        }
    }

    /// Takes one slot of `max_nonces` and one of each owner's shares, or
    /// fails closed.
    fn reserve_slot(&self, owners: &Owners) -> Result<(), ReplayError> {
        if self.try_reserve(owners).is_ok() {
            return Ok(());
        }
        // Entries past their expiry may still be counted until housekeeping
        // runs; run it once before refusing (never under the shares lock:
        // it calls the eviction listener, which takes it).
        self.seen.run_pending_tasks();
        self.try_reserve(owners)
    }

    fn try_reserve(&self, owners: &Owners) -> Result<(), ReplayError> {
        self.shares.take(owners, || self.try_reserve_global())
    }

    fn try_reserve_global(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_nonces).then_some(n + 1)
            })
            .is_ok()
    }
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("enabled", &self.enabled)
            .field("methods", &self.methods)
            .field("acceptance_secs", &self.acceptance)
            .field("max_nonces", &self.max_nonces)
            .field("shares", &self.shares)
            .field("floor", &self.floor.load(Ordering::Relaxed))
            .field("live", &self.live_nonces())
            .finish()
    }
}

/// Why a protected request was refused. Messages are fixed and never echo
/// the header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// `X-Request-Nonce` is absent or empty.
    #[error("the request nonce header is missing")]
    MissingNonce,
    /// The nonce is not canonical base64url of 16 to 64 bytes.
    #[error("the request nonce is malformed")]
    MalformedNonce,
    /// `X-Request-Timestamp` is absent or empty.
    #[error("the request timestamp header is missing")]
    MissingTimestamp,
    /// The timestamp is not a plain decimal number of Unix seconds.
    #[error("the request timestamp is malformed")]
    MalformedTimestamp,
    /// The timestamp is older than the replay window allows.
    #[error("the request timestamp is outside the replay window (too old)")]
    Stale,
    /// The timestamp is further ahead than the replay window allows.
    #[error("the request timestamp is outside the replay window (in the future)")]
    Future,
    /// This nonce was already used by this session within the window.
    #[error("the request nonce was already used")]
    Replayed,
    /// The nonce cache is full; the request is refused rather than letting a
    /// live nonce be forgotten.
    #[error("replay protection is at capacity; retry later")]
    CapacityExhausted,
    /// This session (or its subject) holds its whole share of the nonce
    /// cache; its other requests wait until its own entries expire.
    #[error("this session has too many recent protected requests; retry later")]
    QuotaExhausted,
    /// Cluster mode: Redis did not answer whether another replica saw this
    /// nonce, so the request is refused rather than risk a replay (retry
    /// with a fresh nonce).
    #[error("replay protection is unavailable; retry with a fresh nonce")]
    Unavailable,
}

impl ReplayError {
    /// The stable error code sent to clients and used as a metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingNonce => "replay_nonce_missing",
            Self::MalformedNonce => "replay_nonce_malformed",
            Self::MissingTimestamp => "replay_timestamp_missing",
            Self::MalformedTimestamp => "replay_timestamp_malformed",
            Self::Stale => "replay_timestamp_stale",
            Self::Future => "replay_timestamp_future",
            Self::Replayed => "replay_detected",
            Self::CapacityExhausted => "replay_capacity_exhausted",
            Self::QuotaExhausted => "replay_quota_exhausted",
            Self::Unavailable => "replay_unavailable",
        }
    }
}

/// Asks the fleet about a nonce the local cache accepted: `Ok` when no
/// replica had seen it, [`ReplayError::Replayed`] when one had (the same
/// answer as a local replay), [`ReplayError::Unavailable`] when Redis could
/// not answer within `command_timeout` (fail closed: 503).
pub async fn confirm_fleet(nonce: FleetNonce) -> Result<(), ReplayError> {
    match nonce.confirm().await {
        Ok(Claim::Fresh) => Ok(()),
        Ok(Claim::Replayed) => Err(ReplayError::Replayed),
        Err(_) => Err(ReplayError::Unavailable),
    }
}

/// The header parse path the server runs, for fuzzing: returns the parsed
/// timestamp or the error a request with these header bytes would get before
/// the window and cache checks.
#[doc(hidden)]
pub fn fuzz_parse_headers(
    nonce: Option<&[u8]>,
    timestamp: Option<&[u8]>,
) -> Result<u64, ReplayError> {
    parse_headers(nonce, timestamp).map(|p| p.timestamp)
}

/// Headers after parsing.
struct Parsed {
    nonce: [u8; MAX_NONCE_BYTES],
    nonce_len: usize,
    timestamp: u64,
}

/// Cache key: SHA-256 over (session id, decoded nonce), truncated to 128
/// bits. A fixed 16-byte key instead of two strings saves their two heap
/// allocations (≈ 110 bytes for a 43-character session id and a 22-character
/// nonce) per entry; a collision (≈ n²/2¹²⁹, 2⁻⁸⁹ at a million entries) can only make
/// a fresh request look replayed, never let a replay through.
type NonceKey = [u8; 16];

#[derive(Clone, Copy)]
struct NonceEntry {
    /// Moka lifetime, measured on its own monotonic clock from insertion.
    ttl: Duration,
    /// Wall-clock second at which the entry no longer matters.
    expires_at: u64,
    /// Whose shares the entry counts against (released on removal).
    owners: Owners,
}

struct NonceExpiry;

impl Expiry<NonceKey, NonceEntry> for NonceExpiry {
    fn expire_after_create(&self, _: &NonceKey, v: &NonceEntry, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    // A replaced entry (expired by the wall clock) gets its own new lifetime.
    fn expire_after_update(
        &self,
        _: &NonceKey,
        v: &NonceEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

fn parse_headers(nonce: Option<&[u8]>, timestamp: Option<&[u8]>) -> Result<Parsed, ReplayError> {
    let (nonce, nonce_len) = parse_nonce(nonce)?;
    let timestamp = parse_timestamp(timestamp)?;
    Ok(Parsed {
        nonce,
        nonce_len,
        timestamp,
    })
}

fn parse_nonce(raw: Option<&[u8]>) -> Result<([u8; MAX_NONCE_BYTES], usize), ReplayError> {
    let raw = match raw {
        None | Some([]) => return Err(ReplayError::MissingNonce),
        Some(raw) => raw,
    };
    // Length is checked before decoding so the decoder never sees more than
    // MAX_NONCE_CHARS bytes of attacker input.
    if !(MIN_NONCE_CHARS..=MAX_NONCE_CHARS).contains(&raw.len()) {
        return Err(ReplayError::MalformedNonce);
    }
    let mut out = [0u8; MAX_NONCE_BYTES];
    // URL_SAFE_NO_PAD is strict: no padding, no trailing bits, so one nonce
    // has exactly one accepted spelling (a re-encoding cannot dodge the cache).
    // At least MIN_NONCE_CHARS characters always decode to at least
    // MIN_NONCE_BYTES bytes (asserted at compile time below).
    let len = URL_SAFE_NO_PAD
        .decode_slice(raw, &mut out)
        .map_err(|_| ReplayError::MalformedNonce)?;
    Ok((out, len))
}

fn parse_timestamp(raw: Option<&[u8]>) -> Result<u64, ReplayError> {
    let raw = match raw {
        None | Some([]) => return Err(ReplayError::MissingTimestamp),
        Some(raw) => raw,
    };
    // Digits only: no sign, no whitespace, no fraction; the length cap keeps
    // the value far below u64::MAX, so the fold cannot overflow.
    if raw.len() > MAX_TIMESTAMP_DIGITS || !raw.iter().all(u8::is_ascii_digit) {
        return Err(ReplayError::MalformedTimestamp);
    }
    Ok(raw
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

fn nonce_key(session_id: &str, nonce: &[u8]) -> NonceKey {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Length prefix: ("ab","c") and ("a","bc") must not share a key.
    ctx.update(&(session_id.len() as u64).to_be_bytes());
    ctx.update(session_id.as_bytes());
    ctx.update(nonce);
    let digest = ctx.finish();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

/// Fewest random bytes in a nonce: 128 bits, so honest clients never collide.
pub const MIN_NONCE_BYTES: usize = 16;
/// Most bytes a nonce may decode to. 64 bytes (512 bits) is four times the
/// minimum, room for any client's choice (a UUID, a 256-bit value), while
/// bounding the work per request.
pub const MAX_NONCE_BYTES: usize = 64;
/// base64url characters for [`MIN_NONCE_BYTES`]: ⌈16 × 8 / 6⌉ = 22.
const MIN_NONCE_CHARS: usize = 22;
/// base64url characters for [`MAX_NONCE_BYTES`]: ⌈64 × 8 / 6⌉ = 86.
const MAX_NONCE_CHARS: usize = 86;
// The character bounds imply the byte bounds: ⌊22 × 6 / 8⌋ = 16 and
// ⌊86 × 6 / 8⌋ = 64, so the decoded length needs no second check.
const _: () = assert!(
    MIN_NONCE_CHARS * 6 / 8 >= MIN_NONCE_BYTES && MAX_NONCE_CHARS * 6 / 8 <= MAX_NONCE_BYTES
);
/// Most digits in a timestamp: 12 covers every date until the year 33658
/// and keeps the value below 10¹², far from overflow.
const MAX_TIMESTAMP_DIGITS: usize = 12;
/// Memory per live nonce, for capacity planning: a 16-byte key and a
/// 48-byte value (lifetime, expiry, owners), plus moka's per-entry
/// bookkeeping (the Arc'd entry, key hash, access-order deque and
/// timer-wheel nodes, hash-table slot). Measured as the resident-set growth
/// over 200,000 inserts: ≈ 390 bytes per entry with the former 24-byte
/// value; the 24 bytes of owners make it ≈ 415 (the share counts add one
/// map entry per owner with live nonces, not per nonce).
pub const NONCE_ENTRY_BYTES: u64 = 420;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests;
