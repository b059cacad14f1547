//! Prometheus metrics: one registry, one small typed struct per concern.
//!
//! Components receive only their own struct; labels come from closed sets
//! of `&'static str` (never raw paths or user input), so cardinality is
//! bounded. Exposed in text format on a separate loopback listener.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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
            registry,
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
    refused: Family<Label, Counter>,
    closed: Family<Label, Counter>,
}

impl TlsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            handshakes: Family::default(),
            handshake_seconds: latency_histogram(),
            open_connections: Gauge::default(),
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

/// Decrements the open-connection gauge when dropped.
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
        self.validations.get_or_create(&[("result", result)]).inc();
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
    store_healthy: Gauge,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            responses: Family::default(),
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
    fn open_connection_guard_decrements() {
        let m = Metrics::new();
        let guard = m.tls.connection_opened();
        assert!(m.render().contains("clawgate_open_connections 1"));
        drop(guard);
        assert!(m.render().contains("clawgate_open_connections 0"));
    }
}
