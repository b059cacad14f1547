//! Wall-clock access behind a trait, so every time-dependent check has a
//! testable `_at(now)` form and tests never sleep to reach an expiry.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
///
/// Claims (`iat`, `nbf`, `exp`), replay timestamps and certificate validity
/// are wall-clock facts, so they are read through this trait. Durations that
/// only measure elapsed time (cache TTLs) use `Instant` instead.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Seconds since the Unix epoch (0 if the clock is before 1970).
    fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; for tests and benches.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock frozen at `now`.
    pub fn new(now: SystemTime) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// A clock frozen at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Milliseconds since the Unix epoch (0 before 1970), as the cluster's
/// stream entries and session index carry times.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RFC 3339 in whole seconds, UTC (`2026-01-01T12:00:00Z`), as PASETO
/// claims and the HTTP API carry times; `None` out of range.
pub fn format_rfc3339_secs(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// [`format_rfc3339_secs`] of a `SystemTime` (sub-second part dropped).
pub fn format_rfc3339(t: SystemTime) -> Option<String> {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    format_rfc3339_secs(i64::try_from(secs).ok()?)
}

/// [`format_rfc3339`] for logs and messages, where a time must always
/// render: out of range (before 1970, past year 9999) it reads
/// `(unrepresentable time)`.
pub fn rfc3339(t: SystemTime) -> String {
    format_rfc3339(t).unwrap_or_else(|| "(unrepresentable time)".to_owned())
}

/// Unix seconds of an RFC 3339 time with any offset
/// (`2023-11-14T23:13:20+01:00` → `1_700_000_000`); a fractional part is
/// dropped. `None` when `s` is not RFC 3339. The one parser for times that
/// arrive as text (token claims, proof `iat`); callers map `None` to their
/// own error.
pub fn parse_rfc3339_secs(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.unix_now(), 1_000);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.unix_now(), 1_005);
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn rfc3339_formats_and_parses_whole_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(t).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            parse_rfc3339_secs("2023-11-14T22:13:20Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339_secs("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339_secs("2023-11-14T22:13:20.999Z"),
            Some(1_700_000_000)
        );
        for bad in [
            "",
            "1700000000",
            "2023-11-14 22:13:20",
            "2023-11-14T22:13:20",
        ] {
            assert_eq!(parse_rfc3339_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_unrepresentable_time_still_renders() {
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_rfc3339(before_epoch), None);
        assert_eq!(rfc3339(before_epoch), "(unrepresentable time)");
        assert_eq!(format_rfc3339_secs(i64::MAX), None);
    }
}
