//! Prometheus metrics: one registry, one small typed struct per concern.
//!
//! Components receive only their own struct; labels come from closed sets
//! of `&'static str` (never raw paths or user input), so cardinality is
//! bounded. Exposed in text format on a separate loopback listener.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of one closed-vocabulary label.
pub type Label = [(&'static str, &'static str); 1];

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    /// TLS handshakes and connections.
    pub tls: Arc<TlsMetrics>,
    /// Token validations.
    pub tokens: Arc<TokenMetrics>,
    /// Session issuance and revocation.
    pub sessions: Arc<SessionMetrics>,
    /// Replay rejections.
    pub replay: Arc<ReplayMetrics>,
    /// Session-binding checks (proofs, client certificates).
    pub binding: Arc<BindingMetrics>,
    /// Certificate expiry times.
    pub certs: Arc<CertMetrics>,
    /// HTTP responses and store health.
    pub http: Arc<HttpMetrics>,
    /// Forwarding to the upstream: latency and failures by kind.
    pub upstream: Arc<UpstreamMetrics>,
    /// Refusals: wrong pairing codes, rate limits (429).
    pub refusals: Arc<RefusalMetrics>,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clawgate");
        Self {
            tls: Arc::new(TlsMetrics::register(&mut registry)),
            tokens: Arc::new(TokenMetrics::register(&mut registry)),
            sessions: Arc::new(SessionMetrics::register(&mut registry)),
            replay: Arc::new(ReplayMetrics::register(&mut registry)),
            binding: Arc::new(BindingMetrics::register(&mut registry)),
            certs: Arc::new(CertMetrics::register(&mut registry)),
            http: Arc::new(HttpMetrics::register(&mut registry)),
            upstream: Arc::new(UpstreamMetrics::register(&mut registry)),
            refusals: Arc::new(RefusalMetrics::register(&mut registry)),
            registry: {
                register_build_info(&mut registry);
                registry.register_collector(Box::new(process::ProcessCollector));
                registry
            },
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only mean a
        // metric could not be encoded, and then the partial text is served.
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!(
                event = "metrics_encode_failed",
                "metrics could not be encoded"
            );
        }
        out
    }
}

impl Metrics {
    /// Registers the `clawgate_cluster_*` metrics (only in `mode = "redis"`);
    /// call before the registry is shared.
    pub fn register_cluster(&mut self) -> Arc<crate::gateway::cluster::ClusterMetrics> {
        Arc::new(crate::gateway::cluster::ClusterMetrics::register(
            &mut self.registry,
        ))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// `clawgate_build_info{version}`: always 1; the version is in the label.
fn register_build_info(registry: &mut Registry) {
    let info = Family::<Label, Gauge>::default();
    info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
    registry.register(
        "build_info",
        "Always 1; the label version is the running clawgate version",
        info,
    );
}

/// Latency buckets from 50 µs to ~1.6 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// TLS handshakes and open connections.
#[derive(Debug)]
pub struct TlsMetrics {
    handshakes: Family<Label, Counter>,
    handshake_seconds: Histogram,
    open_connections: Gauge,
    hibernated_connections: Gauge,
    hibernations: Counter,
    refused: Family<Label, Counter>,
    closed: Family<Label, Counter>,
}

impl TlsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            handshakes: Family::default(),
            handshake_seconds: latency_histogram(),
            open_connections: Gauge::default(),
            hibernated_connections: Gauge::default(),
            hibernations: Counter::default(),
            refused: Family::default(),
            closed: Family::default(),
        };
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            m.handshakes.clone(),
        );
        registry.register(
            "tls_handshake_duration_seconds",
            "TLS handshake duration",
            m.handshake_seconds.clone(),
        );
        registry.register(
            "open_connections",
            "TLS connections open now",
            m.open_connections.clone(),
        );
        registry.register(
            "hibernated_connections",
            "Idle HTTP/1.1 connections holding only their TLS state now",
            m.hibernated_connections.clone(),
        );
        registry.register(
            "connection_hibernations",
            "Times an idle HTTP/1.1 connection released its HTTP state",
            m.hibernations.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept, before the TLS handshake, by reason",
            m.refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections closed by a deadline (first request, idle), by deadline",
            m.closed.clone(),
        );
        m
    }

    /// Records one handshake (`result` is a closed label such as `ok`, `timeout`, `no_cipher_suite`).
    pub fn handshake(&self, result: &'static str, took: Duration) {
        self.handshakes.get_or_create(&[("result", result)]).inc();
        self.handshake_seconds.observe(took.as_secs_f64());
    }

    /// Counts a connection as open until the guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }

    /// Counts a connection hibernating until the guard drops.
    pub fn hibernating(&self) -> OpenConnection {
        self.hibernations.inc();
        self.hibernated_connections.inc();
        OpenConnection(self.hibernated_connections.clone())
    }

    /// Counts a connection closed at accept (`reason`: `per_ip_limit`, `server_full`).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a connection closed by a deadline (`deadline`: `first_request`, `idle`).
    pub fn timed_out(&self, deadline: &'static str) {
        self.closed.get_or_create(&[("deadline", deadline)]).inc();
    }

    /// Handshakes recorded with `result` so far.
    pub fn handshakes_with(&self, result: &'static str) -> u64 {
        self.handshakes.get_or_create(&[("result", result)]).get()
    }
}

/// Decrements its gauge (open or hibernated connections) when dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Token validations.
#[derive(Debug)]
pub struct TokenMetrics {
    validations: Family<Label, Counter>,
    /// `result="ok"`, resolved at the first success: counting one is then
    /// an atomic add, with no label hashing or lock (issue 12).
    validations_ok: OnceLock<Counter>,
    validation_seconds: Histogram,
    cache_lookups: CacheLookups,
}

impl TokenMetrics {
    fn register(registry: &mut Registry) -> Self {
        let lookups: Family<Label, Counter> = Family::default();
        // One statement each: `get_or_create` returns a read guard, and a
        // second call while it is alive would wait for the write lock.
        let hit = lookups.get_or_create(&[("result", "hit")]).clone();
        let miss = lookups.get_or_create(&[("result", "miss")]).clone();
        let m = Self {
            validations: Family::default(),
            validations_ok: OnceLock::new(),
            validation_seconds: latency_histogram(),
            cache_lookups: CacheLookups { hit, miss },
        };
        registry.register(
            "token_cache_lookups",
            "Lookups in the cache of verified session tokens, by result (hit, miss)",
            lookups,
        );
        registry.register(
            "token_validations",
            "Bearer token validations by result",
            m.validations.clone(),
        );
        registry.register(
            "token_validation_duration_seconds",
            "Token validation duration",
            m.validation_seconds.clone(),
        );
        m
    }

    /// Records one validation with its stable result code.
    pub fn validation(&self, result: &'static str, took: Duration) {
        if result == "ok" {
            self.validations_ok
                .get_or_init(|| self.validations.get_or_create(&[("result", "ok")]).clone())
                .inc();
        } else {
            self.validations.get_or_create(&[("result", result)]).inc();
        }
        self.validation_seconds.observe(took.as_secs_f64());
    }

    /// The registered hit and miss counters of the verified-token cache,
    /// for the session manager to count into.
    pub fn cache_lookups(&self) -> CacheLookups {
        self.cache_lookups.clone()
    }
}

/// The two counters of `clawgate_token_cache_lookups_total`, resolved once
/// at start-up: counting a lookup is one atomic add, with no label work.
/// `Default` gives counters registered nowhere (a manager built without
/// a gateway still counts, for its own tests).
#[derive(Debug, Clone, Default)]
pub struct CacheLookups {
    hit: Counter,
    miss: Counter,
}

impl CacheLookups {
    /// Counts a hit.
    pub fn hit(&self) {
        self.hit.inc();
    }

    /// Counts a miss.
    pub fn miss(&self) {
        self.miss.inc();
    }

    /// Hits counted so far.
    pub fn hits(&self) -> u64 {
        self.hit.get()
    }

    /// Misses counted so far.
    pub fn misses(&self) -> u64 {
        self.miss.get()
    }
}

/// Session issuance and revocation.
#[derive(Debug)]
pub struct SessionMetrics {
    issued: Family<Label, Counter>,
    revoked: Family<Label, Counter>,
}

impl SessionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            issued: Family::default(),
            revoked: Family::default(),
        };
        registry.register(
            "sessions_issued",
            "Sessions issued by method",
            m.issued.clone(),
        );
        registry.register("sessions_revoked", "Revocations by kind", m.revoked.clone());
        m
    }

    /// Records an issued session (`pair`, `login`, `refresh`, `cli`).
    pub fn issued(&self, method: &'static str) {
        self.issued.get_or_create(&[("method", method)]).inc();
    }

    /// Records a revocation (`logout`, `token`, `session`, `subject`, `reuse`, `evicted`).
    pub fn revoked(&self, kind: &'static str) {
        self.revoked.get_or_create(&[("kind", kind)]).inc();
    }
}

/// Replay-protection rejections.
#[derive(Debug)]
pub struct ReplayMetrics {
    rejections: Family<Label, Counter>,
}

impl ReplayMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            rejections: Family::default(),
        };
        registry.register(
            "replay_rejections",
            "Requests refused by replay protection, by code",
            m.rejections.clone(),
        );
        m
    }

    /// Records a rejection with its stable code.
    pub fn rejected(&self, code: &'static str) {
        self.rejections.get_or_create(&[("code", code)]).inc();
    }
}

/// Session-binding checks on bound tokens.
#[derive(Debug)]
pub struct BindingMetrics {
    checks: Family<Label, Counter>,
    rejections: Family<Label, Counter>,
    check_seconds: Histogram,
}

impl BindingMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            checks: Family::default(),
            rejections: Family::default(),
            check_seconds: latency_histogram(),
        };
        registry.register(
            "binding_checks",
            "Bound requests accepted, by what was verified (proof, certificate, both)",
            m.checks.clone(),
        );
        registry.register(
            "binding_rejections",
            "Requests refused by session binding, by code",
            m.rejections.clone(),
        );
        registry.register(
            "binding_check_duration_seconds",
            "Time to check a bound request's proof or certificate",
            m.check_seconds.clone(),
        );
        m
    }

    /// Records an accepted binding (`proof`, `certificate` or `both`).
    pub fn accepted(&self, kind: &'static str, took: Duration) {
        self.checks.get_or_create(&[("kind", kind)]).inc();
        self.check_seconds.observe(took.as_secs_f64());
    }

    /// Records a rejection with its stable code.
    pub fn rejected(&self, code: &'static str, took: Duration) {
        self.rejections.get_or_create(&[("code", code)]).inc();
        self.check_seconds.observe(took.as_secs_f64());
    }
}

/// Certificate expiry times.
#[derive(Debug)]
pub struct CertMetrics {
    expiry: Family<Label, Gauge<i64, std::sync::atomic::AtomicI64>>,
    renewals: Family<Label, Counter<u64, AtomicU64>>,
}

impl CertMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            expiry: Family::default(),
            renewals: Family::default(),
        };
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Unix time at which a certificate expires (cert=server|root)",
            m.expiry.clone(),
        );
        registry.register(
            "certificate_renewals",
            "Certificate renewals and reloads by result",
            m.renewals.clone(),
        );
        m
    }

    /// Publishes the expiry time of `cert` (`server` or `root`).
    pub fn set_expiry(&self, cert: &'static str, not_after: std::time::SystemTime) {
        let secs = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.expiry.get_or_create(&[("cert", cert)]).set(secs);
    }

    /// Records a renewal or reload attempt (`swapped`, `failed`).
    pub fn renewal(&self, result: &'static str) {
        self.renewals.get_or_create(&[("result", result)]).inc();
    }
}

/// HTTP responses and store health.
#[derive(Debug)]
pub struct HttpMetrics {
    responses: Family<Label, Counter>,
    /// `status="200"`, resolved at the first one (see `validations_ok`).
    responses_200: OnceLock<Counter>,
    store_healthy: Gauge,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            responses: Family::default(),
            responses_200: OnceLock::new(),
            store_healthy: Gauge::default(),
        };
        registry.register(
            "http_responses",
            "HTTP responses by status class",
            m.responses.clone(),
        );
        registry.register(
            "revocation_store_healthy",
            "1 when the revocation store is writable",
            m.store_healthy.clone(),
        );
        m.store_healthy.set(1);
        m
    }

    /// Records a response by status code.
    pub fn response(&self, status: u16) {
        if status == 200 {
            self.responses_200
                .get_or_init(|| self.responses.get_or_create(&[("status", "200")]).clone())
                .inc();
            return;
        }
        self.responses
            .get_or_create(&[("status", status_label(status))])
            .inc();
    }

    /// Publishes store health.
    pub fn set_store_healthy(&self, healthy: bool) {
        self.store_healthy.set(i64::from(healthy));
    }
}

/// Status codes as closed labels: the common ones exactly, others by class.
fn status_label(status: u16) -> &'static str {
    // Runs on every response: a table lookup, no allocation.
    const EXACT: [(u16, &str); 15] = [
        (101, "101"),
        (200, "200"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    if let Some((_, label)) = EXACT.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Why forwarding to the upstream failed: the `kind` label of
/// `clawgate_upstream_errors_total`, in the order of [`UpstreamMetrics`]'s
/// pre-resolved counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Connecting failed (refused, unreachable, or `connect_timeout`).
    Connect,
    /// No response head within `response_timeout`.
    Timeout,
    /// The upstream closed the connection or answered with something invalid.
    BadResponse,
    /// The client's request body failed or was too large while streaming.
    RequestBody,
    /// The request could not be forwarded as sent (CONNECT, `*`, identity bytes).
    InvalidRequest,
    /// The session ended (revoked, expired) before the upstream answered.
    SessionEnded,
}

impl UpstreamErrorKind {
    /// Every kind, in counter order.
    pub const ALL: [Self; 6] = [
        Self::Connect,
        Self::Timeout,
        Self::BadResponse,
        Self::RequestBody,
        Self::InvalidRequest,
        Self::SessionEnded,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::BadResponse => "bad_response",
            Self::RequestBody => "request_body",
            Self::InvalidRequest => "invalid_request",
            Self::SessionEnded => "session_ended",
        }
    }
}

/// Forwarding to the upstream.
#[derive(Debug)]
pub struct UpstreamMetrics {
    response_seconds: Histogram,
    /// One counter per [`UpstreamErrorKind::ALL`] entry, resolved at start.
    errors: [Counter; 6],
}

impl UpstreamMetrics {
    fn register(registry: &mut Registry) -> Self {
        let family = Family::<Label, Counter>::default();
        let errors =
            UpstreamErrorKind::ALL.map(|k| family.get_or_create(&[("kind", k.label())]).clone());
        let m = Self {
            response_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            errors,
        };
        registry.register(
            "upstream_response_duration_seconds",
            "Time from sending a request upstream to its response head (successful forwards only)",
            m.response_seconds.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests that could not be forwarded or got no valid upstream answer, by kind",
            family,
        );
        m
    }

    /// Records a response head received after `took`.
    pub fn answered(&self, took: Duration) {
        self.response_seconds.observe(took.as_secs_f64());
    }

    /// Records a failed forward.
    pub fn failed(&self, kind: UpstreamErrorKind) {
        if let Some(i) = UpstreamErrorKind::ALL.iter().position(|k| *k == kind) {
            self.errors[i].inc();
        }
    }
}

/// The `route` label of `clawgate_rate_limited_total`.
pub const RATE_LIMIT_ROUTES: [&str; 3] = ["auth", "admin", "upstream"];
/// The `reason` label of `clawgate_rate_limited_total`: the error code of the 429.
pub const RATE_LIMIT_REASONS: [&str; 4] = [
    "rate_limited",
    "pairing_locked",
    "replay_quota_exhausted",
    "proof_quota_exhausted",
];
/// The `reason` label of `clawgate_pairing_failures_total`.
pub const PAIRING_FAILURE_REASONS: [&str; 5] =
    ["invalid_code", "used", "locked", "disabled", "other"];

/// Requests the gateway refused on purpose: pairing failures, rate limits.
#[derive(Debug)]
pub struct RefusalMetrics {
    /// `[route][reason]`, resolved at start.
    rate_limited: [[Counter; 4]; 3],
    pairing: [Counter; 5],
}

impl RefusalMetrics {
    fn register(registry: &mut Registry) -> Self {
        let limited = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let rate_limited = RATE_LIMIT_ROUTES.map(|route| {
            RATE_LIMIT_REASONS.map(|reason| {
                limited
                    .get_or_create(&[("route", route), ("reason", reason)])
                    .clone()
            })
        });
        let pairing_family = Family::<Label, Counter>::default();
        let pairing = PAIRING_FAILURE_REASONS
            .map(|reason| pairing_family.get_or_create(&[("reason", reason)]).clone());
        registry.register(
            "rate_limited",
            "Requests refused with 429 by the gateway (not the upstream), by route (auth, admin, upstream) and reason (the error code)",
            limited,
        );
        registry.register(
            "pairing_failures",
            "POST /auth/pair requests that did not get a session, by reason",
            pairing_family,
        );
        Self {
            rate_limited,
            pairing,
        }
    }

    /// Counts a 429 on `route` with error `code`; other codes are not counted.
    pub fn rate_limited(&self, route: &str, code: &str) {
        let r = RATE_LIMIT_ROUTES.iter().position(|x| *x == route);
        let c = RATE_LIMIT_REASONS.iter().position(|x| *x == code);
        if let (Some(r), Some(c)) = (r, c) {
            self.rate_limited[r][c].inc();
        }
    }

    /// Counts a failed pairing by the error code of its answer.
    pub fn pairing_failed(&self, code: &str) {
        let reason = match code {
            "pairing_invalid" => 0,
            "pairing_used" => 1,
            "pairing_locked" => 2,
            "pairing_disabled" => 3,
            _ => 4,
        };
        self.pairing[reason].inc();
    }
}

/// Process metrics read from `/proc/self` at scrape time (Linux; elsewhere
/// they are absent).
mod process {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// Reads CPU time, resident memory and open descriptors when scraped.
    #[derive(Debug)]
    pub(super) struct ProcessCollector;

    impl Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let Some(sample) = Sample::read() else {
                return Ok(());
            };
            let cpu = ConstCounter::new(sample.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent by the process, in seconds",
                None,
                MetricType::Counter,
            )?)?;
            let rss = ConstGauge::new(sample.resident_bytes);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the process (RSS), in bytes",
                None,
                MetricType::Gauge,
            )?)?;
            let fds = ConstGauge::new(sample.open_fds);
            fds.encode(encoder.encode_descriptor(
                "process_open_fds",
                "File descriptors the process has open (sockets included)",
                None,
                MetricType::Gauge,
            )?)?;
            Ok(())
        }
    }

    struct Sample {
        cpu_seconds: f64,
        resident_bytes: i64,
        open_fds: i64,
    }

    impl Sample {
        /// `None` when `/proc/self` cannot be read (not Linux).
        fn read() -> Option<Self> {
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            // Less the descriptor of the listing itself.
            let open_fds = std::fs::read_dir("/proc/self/fd")
                .ok()?
                .count()
                .saturating_sub(1);
            // Fields after the parenthesised command name (which may hold
            // spaces): utime and stime are fields 14 and 15 of the line.
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            // `VmRSS:   12345 kB`: in kibibytes whatever the page size
            // (4 KiB on x86-64, 16 or 64 KiB on some aarch64 kernels).
            let rss_kib: i64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(Self {
                cpu_seconds: (utime + stime) / CLOCK_TICKS_PER_SECOND,
                resident_bytes: rss_kib.saturating_mul(1024),
                open_fds: i64::try_from(open_fds).unwrap_or(i64::MAX),
            })
        }
    }

    /// `USER_HZ`, the unit of `/proc/<pid>/stat` times: part of the kernel's
    /// user ABI and 100 on every architecture Rust's Linux targets cover
    /// (alpha and ia64 differed), whatever the kernel's own `HZ`. Reading
    /// `sysconf(_SC_CLK_TCK)` would need `unsafe` or another dependency.
    const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_design_metric() {
        let m = Metrics::new();
        m.tls.handshake("ok", Duration::from_millis(2));
        m.tokens.validation("ok", Duration::from_micros(80));
        m.sessions.issued("login");
        m.sessions.revoked("logout");
        m.replay.rejected("replay_detected");
        m.binding.accepted("proof", Duration::from_micros(90));
        m.binding
            .rejected("proof_missing", Duration::from_micros(1));
        m.certs.set_expiry(
            "server",
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(10),
        );
        m.http.response(404);
        let text = m.render();
        for name in [
            "clawgate_tls_handshakes_total{result=\"ok\"} 1",
            "clawgate_tls_handshake_duration_seconds_count 1",
            "clawgate_token_validations_total{result=\"ok\"} 1",
            "clawgate_token_validation_duration_seconds_count 1",
            "clawgate_sessions_issued_total{method=\"login\"} 1",
            "clawgate_sessions_revoked_total{kind=\"logout\"} 1",
            "clawgate_replay_rejections_total{code=\"replay_detected\"} 1",
            "clawgate_binding_checks_total{kind=\"proof\"} 1",
            "clawgate_binding_rejections_total{code=\"proof_missing\"} 1",
            "clawgate_binding_check_duration_seconds_count 2",
            "clawgate_certificate_expiry_timestamp_seconds{cert=\"server\"} 10",
            "clawgate_open_connections 0",
            "clawgate_http_responses_total{status=\"404\"} 1",
            "clawgate_revocation_store_healthy 1",
        ] {
            assert!(text.contains(name), "missing {name} in:\n{text}");
        }
    }

    #[test]
    fn operator_metrics_are_exposed_with_pre_resolved_labels() {
        let m = Metrics::new();
        m.upstream.answered(Duration::from_millis(3));
        m.upstream.failed(UpstreamErrorKind::Timeout);
        m.refusals.rate_limited("auth", "rate_limited");
        // Codes outside the documented set are not counted (bounded labels).
        m.refusals.rate_limited("auth", "some_other_code");
        m.refusals.pairing_failed("pairing_invalid");
        m.refusals.pairing_failed("invalid_body");
        let text = m.render();
        for line in [
            "clawgate_upstream_response_duration_seconds_count 1",
            "clawgate_upstream_errors_total{kind=\"timeout\"} 1",
            "clawgate_upstream_errors_total{kind=\"connect\"} 0",
            "clawgate_rate_limited_total{route=\"auth\",reason=\"rate_limited\"} 1",
            "clawgate_rate_limited_total{route=\"upstream\",reason=\"rate_limited\"} 0",
            "clawgate_pairing_failures_total{reason=\"invalid_code\"} 1",
            "clawgate_pairing_failures_total{reason=\"other\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
        assert!(!text.contains("some_other_code"));
        let info = format!(
            "clawgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&info), "{text}");
        // Every kind has its own counter.
        for kind in UpstreamErrorKind::ALL {
            assert!(text.contains(&format!("kind=\"{}\"", kind.label())));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_read_from_proc_at_scrape_time() {
        let m = Metrics::new();
        let text = m.render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        assert!(value("clawgate_process_resident_memory_bytes ") > 0.0);
        assert!(value("clawgate_process_open_fds ") >= 3.0);
        assert!(value("clawgate_process_cpu_seconds_total ") >= 0.0);
    }

    #[test]
    fn open_connection_guard_decrements() {
        let m = Metrics::new();
        let guard = m.tls.connection_opened();
        assert!(m.render().contains("clawgate_open_connections 1"));
        drop(guard);
        assert!(m.render().contains("clawgate_open_connections 0"));
        let hibernating = m.tls.hibernating();
        let text = m.render();
        assert!(text.contains("clawgate_hibernated_connections 1"), "{text}");
        assert!(
            text.contains("clawgate_connection_hibernations_total 1"),
            "{text}"
        );
        drop(hibernating);
        let text = m.render();
        assert!(text.contains("clawgate_hibernated_connections 0"), "{text}");
        assert!(
            text.contains("clawgate_connection_hibernations_total 1"),
            "{text}"
        );
    }
}
