//! The keys directory: Ed25519 signing keys stored as PASERK files, which
//! one signs, which ones verify, reload without a restart, and the public
//! key export for `/.well-known/paseto-keys`.
//!
//! # On-disk convention (also in `keys/README.md`)
//!
//! Every key is one file holding one line, a PASERK `k4.secret.…` string,
//! mode 0600. Its key id (`kid`) is the PASERK `k4.pid.…` of its public key,
//! computed from the content, never from the file name. The name only says
//! what the key is for:
//!
//! | file name                 | status    | signs | verifies | published |
//! |---------------------------|-----------|-------|----------|-----------|
//! | `<unix_secs>-<name>.key`, latest time | `signing` | yes | yes | yes |
//! | `<unix_secs>-<name>.key`, older       | `retired` | no  | yes | yes |
//! | `next-<name>.key`         | `staged`  | no    | yes      | yes       |
//! | any other `*.key`         | `retired` (unmanaged) | no | yes | yes |
//!
//! - The activated key with the latest activation time signs (ties broken by
//!   file name so every node agrees). An activated key stopped signing when
//!   its successor was activated: that is its retirement time, which `prune`
//!   measures against the retention the caller passes.
//! - `generate` on a directory that already has a signer adds a *staged*
//!   key: verifying and published, so other services fetch it before it
//!   signs (PITFALLS K1: add → promote → remove). On a directory with no
//!   signer it creates the signer directly.
//! - `rotate` renames the newest staged key (by modification time) to
//!   `<now>-<name>.key` (an atomic rename), or generates a new signer when
//!   nothing is staged.
//! - Files that follow neither pattern (copied in by hand) verify only. They
//!   never sign, even when no key is activated (signing is only ever chosen
//!   by name, so a stray file cannot take over), are never promoted by
//!   `rotate` and never removed by `prune`.
//! - Hidden files and names not ending in `.key` (README.md, .gitignore,
//!   temporary files of an atomic write) are ignored.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::version4::V4;
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::secret_file::ensure_private_dir;

mod directory;
mod key_file;

pub use directory::{DirListing, generate, inspect, list, parse_key_file, prune, rotate};
use directory::{Fingerprint, LoadedKey};
use key_file::PublicKeyEntry;

/// The loaded keys of one directory; cheap to share behind an `Arc`.
///
/// Readers take a snapshot (`Arc<KeySet>`) under a read lock held only for
/// the clone; `reload` builds a complete new set first and swaps it in with
/// one write, so a reader sees either the old set or the new one.
pub struct KeyRing {
    dir: PathBuf,
    current: RwLock<Arc<KeySet>>,
    /// Serializes reloads and remembers the fingerprint of the last scan.
    reload_state: Mutex<Option<Fingerprint>>,
}

impl KeyRing {
    /// Loads the keys in `dir`. An empty directory is fine (then nothing
    /// signs); broken files are skipped and logged.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, KeyError> {
        let dir = dir.as_ref().to_path_buf();
        let fingerprint = directory::fingerprint(&dir);
        let scan = directory::scan(&dir, &[])?;
        let set = KeySet::new(scan.keys);
        let report = ReloadReport::between(&KeySet::default(), &set, scan.skipped, scan.warnings);
        report.log();
        Ok(Self {
            dir,
            current: RwLock::new(Arc::new(set)),
            reload_state: Mutex::new(fingerprint),
        })
    }

    /// First start: creates `dir` (mode 0700) and a signing key when none is
    /// activated (promoting a staged key if there is one), then loads it.
    pub fn open_or_init(dir: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::open_or_init_at(dir, SystemClock.now())
    }

    /// [`KeyRing::open_or_init`] with an explicit activation time.
    pub fn open_or_init_at(dir: impl AsRef<Path>, now: SystemTime) -> Result<Self, KeyError> {
        let dir = dir.as_ref();
        ensure_private_dir(dir).map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let listing = inspect(dir)?;
        if !listing.keys.iter().any(|k| k.status == KeyStatus::Signing) {
            let key = rotate(dir, now)?;
            // WARN, not INFO: a new signer in an unexpected directory is how
            // every existing token starts failing with `unknown_key`.
            tracing::warn!(
                event = "signing_key_created",
                kid = %key.kid,
                file = %key.file.display(),
                dir = %dir.display(),
                "created a new signing key: tokens signed with keys from any other directory are not accepted"
            );
        }
        Self::open(dir)
    }

    /// The directory this ring reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory and swaps the new key set in atomically.
    ///
    /// Never fails and never panics: an unreadable directory keeps every
    /// loaded key; a broken file is skipped and reported, and if that path
    /// held a good key before, the last good key is kept. A deleted file's
    /// key stops verifying.
    pub fn reload(&self) -> ReloadReport {
        let mut seen = self
            .reload_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Fingerprint before reading: a change during the scan shows up as a
        // difference on the next poll and triggers another reload.
        *seen = directory::fingerprint(&self.dir);
        let previous = self.snapshot();
        match directory::scan(&self.dir, &previous.keys) {
            Ok(scan) => {
                let mut next = KeySet::new(scan.keys);
                let report = ReloadReport::between(&previous, &next, scan.skipped, scan.warnings);
                // A kid that stops verifying moves the generation on, so
                // whatever was cached on its word is dropped at its next
                // lookup (`session_manager::verified_cache`). Reloads are
                // serialized by `reload_state`, so this never goes back.
                next.generation = previous
                    .generation
                    .wrapping_add(u64::from(!report.removed.is_empty()));
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
                report
            }
            Err(error) => ReloadReport::unreadable(&previous, &error),
        }
    }

    /// Reloads only if the directory's fingerprint (names, sizes, mtimes,
    /// inodes of `*.key` files) changed since the last scan.
    pub fn reload_if_changed(&self) -> Option<ReloadReport> {
        {
            let seen = self
                .reload_state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *seen == directory::fingerprint(&self.dir) {
                return None;
            }
        }
        Some(self.reload())
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> Result<SigningKey, KeyError> {
        let set = self.snapshot();
        set.signer()
            .map(|k| SigningKey {
                kid: k.info.kid.clone(),
                secret: Arc::clone(&k.secret),
            })
            .ok_or_else(|| KeyError::NoSigningKey {
                dir: self.dir.clone(),
            })
    }

    /// The verifying key with exactly this `kid`, if loaded.
    pub fn verifying_key(&self, kid: &str) -> Option<VerifyingKey> {
        let set = self.snapshot();
        set.by_kid
            .get(kid)
            .and_then(|&i| set.keys.get(i))
            .map(|k| VerifyingKey(Arc::clone(&k.public)))
    }

    /// The removal generation: it moves on each time a reload drops a kid
    /// (a key deleted, pruned, or replaced), never on additions. Read it
    /// *before* verifying a token that is to be cached: a removal that
    /// races the verification then shows as a newer generation.
    pub fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    /// Whether `kid` still verifies and no key was removed since
    /// `generation` was read ([`generation`](Self::generation)): what a
    /// cached verification made then is still vouched for. One snapshot
    /// answers both.
    pub fn still_vouches(&self, kid: &str, generation: u64) -> bool {
        let set = self.snapshot();
        set.generation == generation && set.by_kid.contains_key(kid)
    }

    /// Every loaded key: signer first, then staged, then retired.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.snapshot()
            .keys
            .iter()
            .map(|k| k.info.clone())
            .collect()
    }

    /// The public keys for `/.well-known/paseto-keys`, signer first.
    pub fn public_keys(&self) -> Vec<PublishedKey> {
        self.snapshot()
            .keys
            .iter()
            .map(|k| PublishedKey {
                kid: k.info.kid.clone(),
                public: k.public.paserk.clone(),
                status: k.info.status,
            })
            .collect()
    }

    /// Polls the directory every `interval` and reloads when it changed,
    /// logging what changed or was skipped. Must be called inside a Tokio
    /// runtime; the task ends when the last other `Arc` to the ring is
    /// dropped (or when the handle is aborted).
    pub fn spawn_watcher(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let ring: Weak<Self> = Arc::downgrade(&self);
        drop(self);
        // tokio's interval panics on zero; config already requires > 0.
        let period = interval.max(MIN_POLL_INTERVAL);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(strong) = ring.upgrade() else { return };
                // Directory reads are blocking I/O: keep them off the runtime.
                match tokio::task::spawn_blocking(move || strong.reload_if_changed()).await {
                    Ok(Some(report)) => report.log(),
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "key directory poll failed"),
                }
            }
        })
    }

    fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

/// The signing key: its `kid` and secret. Cloning shares the secret, which
/// is zeroized when the last clone is dropped.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    secret: Arc<AsymmetricSecretKey<V4>>,
}

impl SigningKey {
    /// The PASERK `k4.pid.…` of this key's public half.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The secret key, for `session_token` to sign with.
    pub(crate) fn secret(&self) -> &AsymmetricSecretKey<V4> {
        &self.secret
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

/// A public key that verifies tokens whose footer names its `kid`.
#[derive(Debug, Clone)]
pub struct VerifyingKey(Arc<PublicKeyEntry>);

impl VerifyingKey {
    /// The PASERK `k4.pid.…` of this key.
    pub fn kid(&self) -> &str {
        &self.0.kid
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &AsymmetricPublicKey<V4> {
        &self.0.key
    }

    /// The PASERK `k4.public.…` form.
    pub fn to_paserk(&self) -> &str {
        &self.0.paserk
    }
}

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Signs new tokens (and verifies).
    Signing,
    /// Published and verifying, waiting for `rotate` to make it sign.
    Staged,
    /// Verifies tokens it signed before; signs no more.
    Retired,
}

impl KeyStatus {
    /// `signing`, `staged` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signing => "signing",
            Self::Staged => "staged",
            Self::Retired => "retired",
        }
    }
}

/// One key as `keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// PASERK `k4.pid.…` of the public key.
    pub kid: String,
    /// What the key is for.
    pub status: KeyStatus,
    /// The file it was read from.
    pub file: PathBuf,
    /// When it started signing (activated keys only).
    pub activated_at: Option<SystemTime>,
    /// When it stopped signing: its successor's activation (retired
    /// activated keys only).
    pub retired_at: Option<SystemTime>,
    /// When it was staged, from the file's mtime (staged keys only). Lets
    /// `keys rotate` warn when a key was published too recently for every
    /// verifier to have fetched it (PITFALLS K1).
    pub staged_at: Option<SystemTime>,
    /// The file name follows no convention: verifies only, never signs,
    /// never promoted or pruned.
    pub unmanaged: bool,
}

/// One entry of `/.well-known/paseto-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedKey {
    /// PASERK `k4.pid.…`.
    pub kid: String,
    /// PASERK `k4.public.…`.
    pub public: String,
    /// `signing`, `staged` or `retired`.
    pub status: KeyStatus,
}

/// A key file that was not used, and why (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKeyFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
    /// The key previously loaded from this path is still in use.
    pub kept_previous: bool,
}

/// What a reload changed; `log()` writes it to `tracing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Kids that verify now and did not before.
    pub added: Vec<String>,
    /// Kids that no longer verify.
    pub removed: Vec<String>,
    /// The signer before the reload.
    pub previous_signer: Option<String>,
    /// The signer after the reload.
    pub signer: Option<String>,
    /// Files not used.
    pub skipped: Vec<SkippedKeyFile>,
    /// Usable but suspicious (permissions, duplicates).
    pub warnings: Vec<String>,
    /// The directory could not be read; every loaded key was kept.
    pub dir_error: Option<String>,
}

impl ReloadReport {
    /// Whether the set of verifying keys or the signer changed.
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty() || self.signer != self.previous_signer
    }

    /// Logs the changes and problems (kids and paths only, never key material).
    pub fn log(&self) {
        if let Some(error) = &self.dir_error {
            tracing::warn!(%error, "keys directory unreadable; keeping the loaded keys");
        }
        for s in &self.skipped {
            let file = s.path.display();
            tracing::warn!(%file, reason = %s.reason, kept_previous = s.kept_previous, "key file skipped");
        }
        for warning in &self.warnings {
            tracing::warn!(%warning, "key file warning");
        }
        for kid in &self.added {
            tracing::info!(event = "verification_key_added", %kid, "verification key added");
        }
        for kid in &self.removed {
            tracing::info!(event = "verification_key_removed", %kid, "verification key removed");
        }
        if self.signer != self.previous_signer {
            // Plain kids, a field left out when there is none (never `Some("k4…")`).
            tracing::info!(
                event = "signing_key_changed",
                previous = self.previous_signer.as_deref(),
                signer = self.signer.as_deref(),
                "signing key changed"
            );
        }
        if self.signer.is_none() && self.dir_error.is_none() {
            tracing::warn!("no signing key: tokens cannot be issued until one is activated");
        }
    }

    fn between(
        previous: &KeySet,
        next: &KeySet,
        skipped: Vec<SkippedKeyFile>,
        warnings: Vec<String>,
    ) -> Self {
        let kids =
            |set: &KeySet| -> Vec<String> { set.keys.iter().map(|k| k.info.kid.clone()).collect() };
        Self {
            added: kids(next)
                .into_iter()
                .filter(|k| !previous.by_kid.contains_key(k))
                .collect(),
            removed: kids(previous)
                .into_iter()
                .filter(|k| !next.by_kid.contains_key(k))
                .collect(),
            previous_signer: previous.signer().map(|k| k.info.kid.clone()),
            signer: next.signer().map(|k| k.info.kid.clone()),
            skipped,
            warnings,
            dir_error: None,
        }
    }

    fn unreadable(current: &KeySet, error: &KeyError) -> Self {
        let signer = current.signer().map(|k| k.info.kid.clone());
        Self {
            previous_signer: signer.clone(),
            signer,
            dir_error: Some(error.to_string()),
            ..Self::default()
        }
    }
}

/// Why a key operation failed. Messages name paths, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The keys directory is missing or cannot be listed.
    #[error("keys directory {}: cannot be read: {source}", dir.display())]
    DirUnreadable {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A key file cannot be used (the reason never quotes its content).
    #[error("key file {}: {reason}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No key is activated for signing in the directory.
    #[error("no signing key in {}: run `clawgate keys rotate`", dir.display())]
    NoSigningKey {
        /// The directory.
        dir: PathBuf,
    },
    /// Creating, renaming or removing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The operating system's random generator failed while making a key.
    #[error("key generation failed: the OS random generator is unavailable")]
    Generation,
}

/// Loaded keys in display order (signer, staged, retired, unmanaged).
#[derive(Default)]
struct KeySet {
    keys: Vec<LoadedKey>,
    by_kid: HashMap<String, usize>,
    /// Reloads that removed a kid, since the ring was opened.
    generation: u64,
}

impl KeySet {
    fn new(keys: Vec<LoadedKey>) -> Self {
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.info.kid.clone(), i))
            .collect();
        Self {
            keys,
            by_kid,
            generation: 0,
        }
    }

    fn signer(&self) -> Option<&LoadedKey> {
        self.keys
            .first()
            .filter(|k| k.info.status == KeyStatus::Signing)
    }
}

/// Floor for the watcher's poll period.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
