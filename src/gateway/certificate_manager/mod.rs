//! Certificates: load provided PEM files or generate a local root and a
//! server certificate on first run, serve them through a resolver that can
//! swap them while running, and renew or reload them.
//!
//! Generated layout in `[tls] cert_dir` (default `~/.zeroclaw/certs/`):
//! `ca.crt` + `ca.key` (long-lived local root; clients trust `ca.crt` once)
//! and `gateway.crt` (leaf + root chain) + `gateway.key` (short-lived leaf).
//! Normally only the leaf rotates, so clients keep trusting the gateway
//! across renewals, as with Caddy's internal issuer or mkcert. The root is
//! renewed only when it is due, well before it expires
//! ([`root_renewal_due`]), with a loud `local_root_renewed` warning: clients
//! must then trust the new `ca.crt`. Keys are written 0600, atomically.
//!
//! Provided files (`cert_path` + `key_path`) are polled for changes and
//! reloaded once stable ([`watch_provided`]); a bad replacement keeps the
//! last good one serving. The manager runs its own upkeep task
//! ([`CertificateManager::spawn_upkeep`]: renewal, the file watch, the
//! expiry alert) on its injected clock and its own `[tls]` settings.

mod expiry;
mod issue;
mod local_ca;
mod pem;
mod resolver;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use issue::{DEFAULT_SANS, PemPair, generate_root, issue_server_cert};
pub use local_ca::{root_renew_threshold, root_renewal_due};
pub use pem::{
    CertInfo, LoadedCert, MIN_RSA_BITS, fingerprint, fingerprint_hex, inspect, load_files,
    load_pem, parse_chain, spki_pin,
};
pub use resolver::CertResolver;
pub use watch::{Debounce, FileStamp, STABLE_POLLS, spawn_provided_watch, watch_provided};

use local_ca::{
    chains_to, check_not_expired, ensure_leaf, ensure_root, inspect_pem, issue_and_write_leaf,
    read_root, read_string, renew_root, write_root,
};

use crate::clock::Clock;
use crate::config::TlsConfig;

/// Why a certificate could not be loaded, generated or swapped in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A certificate or key file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PEM or DER data could not be parsed.
    #[error("certificate is not valid PEM/X.509: {0}")]
    BadPem(String),
    /// A well-formed server certificate that does not chain to the local
    /// root on disk (SIGHUP reload of generated files).
    #[error("{} does not chain to {}", LEAF_CERT, CA_CERT)]
    NotChainedToRoot,
    /// The certificate file holds no certificate.
    #[error("no certificate found{}", at(path))]
    NoCertificate {
        /// The file, when known.
        path: Option<PathBuf>,
    },
    /// The key file holds no PKCS#8, SEC1 or PKCS#1 private key.
    #[error(
        "no private key found (PKCS#8, SEC1 or PKCS#1 PEM expected){}",
        at(path)
    )]
    NoPrivateKey {
        /// The file, when known.
        path: Option<PathBuf>,
    },
    /// The key type is not supported by the TLS provider.
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
    /// An RSA key below the minimum size.
    #[error("RSA key of {bits} bits is too small (minimum {MIN_RSA_BITS})")]
    RsaKeyTooSmall {
        /// Its modulus size.
        bits: usize,
    },
    /// The private key does not belong to the certificate.
    #[error("private key does not match the certificate's public key")]
    KeyMismatch,
    /// The certificate's validity ended.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// End of validity (RFC 3339).
        not_after: String,
    },
    /// The certificate's validity has not started.
    #[error("certificate is not valid before {not_before}")]
    NotYetValid {
        /// Start of validity (RFC 3339).
        not_before: String,
    },
    /// Only one of `ca.crt` / `ca.key` exists; the root is never regenerated silently.
    #[error("local root in {} is incomplete (ca.crt and ca.key must both exist); restore it, or remove both to create a new root that clients must trust again", dir.display())]
    RootIncomplete {
        /// The certificate directory.
        dir: PathBuf,
    },
    /// The local root expired; the root is never regenerated silently.
    #[error("local root {} expired at {not_after}; run `clawgate cert generate --new-root` and make clients trust the new ca.crt", path.display())]
    RootExpired {
        /// The root certificate file.
        path: PathBuf,
        /// End of validity (RFC 3339).
        not_after: String,
    },
    /// rcgen failed to build a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The configured validity does not fit in a timestamp.
    #[error("certificate validity is out of range")]
    BadValidity,
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

impl CertError {
    fn at_paths(self, cert: &Path, key: &Path) -> Self {
        match self {
            Self::NoCertificate { path: None } => Self::NoCertificate {
                path: Some(cert.to_path_buf()),
            },
            Self::NoPrivateKey { path: None } => Self::NoPrivateKey {
                path: Some(key.to_path_buf()),
            },
            other => other,
        }
    }
}

fn at(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

/// Where the served certificate comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Local root + leaf in a directory, generated when needed.
    Generated { dir: PathBuf },
    /// Files named in the config, reloaded when they change.
    Provided { cert: PathBuf, key: PathBuf },
}

/// What a renewal or reload check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// Nothing was due.
    Unchanged,
    /// A new certificate was swapped in.
    Swapped(CertInfo),
    /// The local root was due and was replaced; a leaf under the new root
    /// was swapped in. Clients must trust the new `ca.crt`.
    RootRenewed {
        /// The new server certificate.
        leaf: CertInfo,
        /// The new root.
        root: CertInfo,
    },
}

/// Owns the served certificate: loading, generation, renewal, reload and
/// the live resolver.
pub struct CertificateManager {
    source: Source,
    config: TlsConfig,
    clock: Arc<dyn Clock>,
    resolver: Arc<CertResolver>,
    root: Mutex<Option<CertInfo>>,
}

impl CertificateManager {
    /// Loads the configured certificate, generating a local root and server
    /// certificate on first run. Fails closed: with no usable certificate
    /// there is no manager (and so no listener).
    pub fn init(config: &TlsConfig, clock: Arc<dyn Clock>) -> Result<Self, CertError> {
        let now = clock.now();
        let (source, loaded, root) = match (&config.cert_path, &config.key_path) {
            (Some(cert), Some(key)) => {
                let loaded = load_files(cert, key, now)?;
                (
                    Source::Provided {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    loaded,
                    None,
                )
            }
            _ => {
                let dir = config.cert_dir.clone();
                let root = ensure_root(&dir, config, now)?;
                let loaded = ensure_leaf(&dir, &root, config, now)?;
                let root_info = inspect_pem(&root.cert_pem)?;
                (Source::Generated { dir }, loaded, Some(root_info))
            }
        };
        let resolver = Arc::new(CertResolver::new(
            &loaded,
            renew_threshold(config, &loaded.info),
        ));
        Ok(Self {
            source,
            config: config.clone(),
            clock,
            resolver,
            root: Mutex::new(root),
        })
    }

    /// The resolver to hand to rustls; it follows every swap.
    pub fn resolver(&self) -> Arc<CertResolver> {
        Arc::clone(&self.resolver)
    }

    /// Facts about the certificate being served now.
    pub fn current(&self) -> CertInfo {
        self.resolver.info()
    }

    /// Facts about the local root (generated mode only).
    pub fn root(&self) -> Option<CertInfo> {
        self.root.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Path of the root clients should trust (generated mode only).
    pub fn root_path(&self) -> Option<PathBuf> {
        match &self.source {
            Source::Generated { dir } => Some(dir.join(CA_CERT)),
            Source::Provided { .. } => None,
        }
    }

    /// Whether the certificate comes from provided files.
    pub fn is_provided(&self) -> bool {
        matches!(self.source, Source::Provided { .. })
    }

    /// The provided certificate and key files (provided mode only).
    pub fn provided_paths(&self) -> Option<(&Path, &Path)> {
        match &self.source {
            Source::Provided { cert, key } => Some((cert, key)),
            Source::Generated { .. } => None,
        }
    }

    /// Swaps in a checked certificate. New handshakes use it at once;
    /// established connections keep theirs.
    pub fn swap(&self, loaded: &LoadedCert) {
        self.resolver
            .swap(loaded, renew_threshold(&self.config, &loaded.info));
    }

    /// Renews the local root when it is due at `now` (see
    /// [`root_renewal_due`]) and a generated server certificate when it is
    /// due, or re-reads provided files and swaps them in when they changed.
    /// A bad replacement is an error and the current certificate keeps
    /// serving.
    pub fn refresh_at(&self, now: SystemTime) -> Result<RenewOutcome, CertError> {
        match &self.source {
            Source::Generated { dir } => {
                if let Some(root) = self
                    .root()
                    .filter(|r| root_renewal_due(&self.config, r, now))
                {
                    return self.renew_root_at(dir, &root, now);
                }
                if now < self.resolver.renew_at() {
                    return Ok(RenewOutcome::Unchanged);
                }
                let root = read_root(dir)?;
                let loaded = issue_and_write_leaf(dir, &root, &self.config, now)?;
                // The root on disk is the one the new leaf chains to.
                self.set_root(inspect_pem(&root.cert_pem)?);
                self.swap(&loaded);
                Ok(RenewOutcome::Swapped(loaded.info))
            }
            Source::Provided { cert, key } => {
                let loaded = load_files(cert, key, now)?;
                if loaded.info.fingerprint_sha256 == self.current().fingerprint_sha256 {
                    return Ok(RenewOutcome::Unchanged);
                }
                self.swap(&loaded);
                Ok(RenewOutcome::Swapped(loaded.info))
            }
        }
    }

    /// Re-reads the served certificate files (SIGHUP): picks up a
    /// certificate written by `clawgate cert generate` or by hand. The files
    /// are checked in full (and, when generated, must chain to the root on
    /// disk) before the swap; on any error the current certificate stays.
    pub fn reload_files_at(&self, now: SystemTime) -> Result<RenewOutcome, CertError> {
        let Source::Generated { dir } = &self.source else {
            return self.refresh_at(now);
        };
        let loaded = load_files(&dir.join(LEAF_CERT), &dir.join(LEAF_KEY), now)?;
        if loaded.info.fingerprint_sha256 == self.current().fingerprint_sha256 {
            return Ok(RenewOutcome::Unchanged);
        }
        let root = read_root(dir)?;
        if !chains_to(&loaded, &root) {
            // Only a leaf under the root clients trust may be served.
            return Err(CertError::NotChainedToRoot);
        }
        self.set_root(inspect_pem(&root.cert_pem)?);
        self.swap(&loaded);
        Ok(RenewOutcome::Swapped(loaded.info))
    }

    /// [`Self::reload_files_at`] on the manager's clock.
    pub fn reload_files(&self) -> Result<RenewOutcome, CertError> {
        self.reload_files_at(self.clock.now())
    }

    /// [`Self::refresh_at`] on the manager's clock.
    pub fn refresh(&self) -> Result<RenewOutcome, CertError> {
        self.refresh_at(self.clock.now())
    }

    /// Replaces the due root, then issues and serves a leaf under it. Order:
    /// root files, then leaf files, then the swap, so a crash in between
    /// leaves a state the next start repairs (the leaf no longer chains).
    fn renew_root_at(
        &self,
        dir: &Path,
        old: &CertInfo,
        now: SystemTime,
    ) -> Result<RenewOutcome, CertError> {
        check_not_expired(dir, old, now)?;
        let root = renew_root(dir, &self.config, old, now)?;
        let loaded = issue_and_write_leaf(dir, &root, &self.config, now)?;
        let root_info = inspect_pem(&root.cert_pem)?;
        self.set_root(root_info.clone());
        self.swap(&loaded);
        Ok(RenewOutcome::RootRenewed {
            leaf: loaded.info,
            root: root_info,
        })
    }

    fn set_root(&self, info: CertInfo) {
        *self.root.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
    }
}

/// Issues a fresh server certificate in `cert_dir` (creating the root when
/// there is none, or replacing it when `new_root`), for `clawgate cert
/// generate`. Returns the leaf and root.
pub fn generate_into(
    config: &TlsConfig,
    new_root: bool,
    now: SystemTime,
) -> Result<(CertInfo, CertInfo), CertError> {
    let dir = &config.cert_dir;
    let root = if new_root {
        write_root(dir, config, now)?
    } else {
        ensure_root(dir, config, now)?
    };
    let leaf = issue_and_write_leaf(dir, &root, config, now)?;
    Ok((leaf.info, inspect_pem(&root.cert_pem)?))
}

/// The certificates a configuration names, for `clawgate cert show` and
/// `fingerprint`: the server certificate, then the root if generated.
pub fn describe(config: &TlsConfig) -> Result<Vec<(&'static str, CertInfo)>, CertError> {
    let (cert_path, root_path) = match &config.cert_path {
        Some(p) => (p.clone(), None),
        None => (
            config.cert_dir.join(LEAF_CERT),
            Some(config.cert_dir.join(CA_CERT)),
        ),
    };
    let mut out = vec![("server", inspect_pem(&read_string(&cert_path)?)?)];
    if let Some(root) = root_path {
        out.push(("root", inspect_pem(&read_string(&root)?)?));
    }
    Ok(out)
}

/// Root file names inside `cert_dir`.
pub const CA_CERT: &str = "ca.crt";
/// Root key file name inside `cert_dir`.
pub const CA_KEY: &str = "ca.key";
/// Server certificate chain file name inside `cert_dir`.
pub const LEAF_CERT: &str = "gateway.crt";
/// Server key file name inside `cert_dir`.
pub const LEAF_KEY: &str = "gateway.key";

/// When to renew: at most `renew_before`, and at most a third of the
/// lifetime before expiry, so short-lived certificates renew in time too
/// (PITFALLS C3: a fixed 30 days is wrong for short leaves).
pub fn renew_threshold(config: &TlsConfig, info: &CertInfo) -> Duration {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or(Duration::ZERO);
    config.renew_before.min(lifetime / 3)
}

#[cfg(test)]
mod tests;
