//! The rustls certificate resolver that can swap certificates while
//! running. rustls' resolver trait is renamed in 0.24 (PITFALLS C8), so it
//! is implemented in this one file only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;

use super::{CertInfo, LoadedCert};

/// Serves the current certificate to every handshake; [`Self::swap`]
/// replaces it atomically. A handshake holds its own `Arc`, so a swap never
/// disturbs a handshake in progress or an open connection.
pub struct CertResolver {
    current: RwLock<(Arc<CertifiedKey>, CertInfo)>,
    /// Unix seconds from which renewal is due.
    renew_at: AtomicU64,
    due: Notify,
}

impl CertResolver {
    pub(super) fn new(loaded: &LoadedCert, threshold: Duration) -> Self {
        Self {
            current: RwLock::new((Arc::clone(&loaded.certified), loaded.info.clone())),
            renew_at: AtomicU64::new(renew_at_secs(&loaded.info, threshold)),
            due: Notify::new(),
        }
    }

    pub(super) fn swap(&self, loaded: &LoadedCert, threshold: Duration) {
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        *slot = (Arc::clone(&loaded.certified), loaded.info.clone());
        self.renew_at
            .store(renew_at_secs(&loaded.info, threshold), Ordering::Release);
    }

    /// Facts about the certificate being served.
    pub fn info(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// When renewal becomes due.
    pub fn renew_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.renew_at.load(Ordering::Acquire))
    }

    /// Resolves when a handshake noticed that renewal is due (a renewal task
    /// waits on this as well as on its timer).
    pub async fn renewal_due(&self) {
        self.due.notified().await;
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Check expiry on the wall clock at handshake time: a renewal timer
        // does not fire while the host sleeps (PITFALLS C2).
        if SystemTime::now() >= self.renew_at() {
            self.due.notify_one();
        }
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()).0,
        ))
    }
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("served", &self.info().fingerprint_sha256)
            .finish_non_exhaustive()
    }
}

fn renew_at_secs(info: &CertInfo, threshold: Duration) -> u64 {
    info.not_after
        .checked_sub(threshold)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}
