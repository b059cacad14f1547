//! `clawgate_cluster_*`: registered only in `mode = "redis"`, so a
//! standalone gateway exposes none of them. Every label value is a
//! `&'static str` from the code (operation names, error kinds, resync
//! reasons), never user input; `docs/operations.md` lists them.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::ClusterError;

type OpLabel = [(&'static str, &'static str); 1];
type OpKindLabel = [(&'static str, &'static str); 2];

/// Connection health, command latency and errors, and the revocation
/// mirror's propagation and staleness.
#[derive(Debug)]
pub struct ClusterMetrics {
    up: Gauge,
    command_seconds: Family<OpLabel, Histogram>,
    errors: Family<OpKindLabel, Counter>,
    propagation_seconds: Histogram,
    staleness_seconds: Gauge<f64, AtomicU64>,
    outbox_pending: Gauge,
    resyncs: Family<OpLabel, Counter>,
    unavailable: Family<OpLabel, Counter>,
}

impl ClusterMetrics {
    /// Registers every cluster metric into `registry` (prefix `clawgate`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            up: Gauge::default(),
            command_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
            }),
            errors: Family::default(),
            propagation_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            staleness_seconds: Gauge::default(),
            outbox_pending: Gauge::default(),
            resyncs: Family::default(),
            unavailable: Family::default(),
        };
        registry.register(
            "cluster_up",
            "1 while the last Redis command answered, 0 after a timeout or connection failure",
            m.up.clone(),
        );
        registry.register(
            "cluster_command_duration_seconds",
            "Time of successful Redis calls, by operation",
            m.command_seconds.clone(),
        );
        registry.register(
            "cluster_errors",
            "Redis calls that gave no usable answer, by operation and kind",
            m.errors.clone(),
        );
        registry.register(
            "cluster_revocation_propagation_seconds",
            "From a revocation on its origin replica to its arrival in this replica's local set",
            m.propagation_seconds.clone(),
        );
        registry.register(
            "cluster_staleness_seconds",
            "Age of this replica's copy of the fleet's revocations (time since the stream reader last heard from Redis)",
            m.staleness_seconds.clone(),
        );
        registry.register(
            "cluster_outbox_pending",
            "Local revocations not yet written to Redis (retried until they are)",
            m.outbox_pending.clone(),
        );
        registry.register(
            "cluster_resyncs",
            "Full reloads of the revocation snapshot, by reason",
            m.resyncs.clone(),
        );
        registry.register(
            "cluster_unavailable",
            "Requests refused with 503 because Redis could not answer, by operation",
            m.unavailable.clone(),
        );
        m
    }

    /// Records a successful call of `op`.
    pub fn observe(&self, op: &'static str, took: Duration) {
        self.command_seconds
            .get_or_create(&[("op", op)])
            .observe(took.as_secs_f64());
    }

    /// Records a failed call of `op`.
    pub fn error(&self, op: &'static str, error: &ClusterError) {
        self.errors
            .get_or_create(&[("op", op), ("kind", error.kind())])
            .inc();
    }

    /// Sets `clawgate_cluster_up`.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Records one revocation's trip from its origin to this replica.
    pub fn propagated(&self, took: Duration) {
        self.propagation_seconds.observe(took.as_secs_f64());
    }

    /// Sets the mirror's staleness.
    pub fn set_staleness(&self, age: Duration) {
        self.staleness_seconds.set(age.as_secs_f64());
    }

    /// Sets how many revocations wait to be written to Redis.
    pub fn set_outbox_pending(&self, n: usize) {
        self.outbox_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a snapshot reload (`startup`, `gap`, `epoch`, `rollback`).
    pub fn resynced(&self, reason: &'static str) {
        self.resyncs.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a request refused because Redis could not answer for `op`.
    pub fn unavailable(&self, op: &'static str) {
        self.unavailable.get_or_create(&[("op", op)]).inc();
    }
}
