//! The keys directory as a whole: scans that turn files into a ranked key
//! list, change fingerprints, and the `keys generate|rotate|list|prune`
//! operations.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pasetors::keys::AsymmetricSecretKey;
use pasetors::version4::V4;

use super::key_file::{self, KEY_SUFFIX, Material, PublicKeyEntry, Role, STAGED_PREFIX};
use super::{KeyError, KeyInfo, KeyStatus, SkippedKeyFile};
use crate::secret_file::{ensure_private_dir, mode_of, sync_dir};

/// The keys found in a directory and the files that were not usable.
#[derive(Debug, Clone)]
pub struct DirListing {
    /// Usable keys: signer first, then staged (newest first), then retired.
    pub keys: Vec<KeyInfo>,
    /// Key files that were not used, and why.
    pub skipped: Vec<SkippedKeyFile>,
    /// Usable but suspicious files (permissions, duplicates).
    pub warnings: Vec<String>,
}

/// Lists the keys in `dir` and the files that could not be used.
pub fn inspect(dir: &Path) -> Result<DirListing, KeyError> {
    let scan = scan(dir, &[])?;
    Ok(DirListing {
        keys: scan.keys.into_iter().map(|k| k.info).collect(),
        skipped: scan.skipped,
        warnings: scan.warnings,
    })
}

/// `keys list`: the usable keys in `dir`. Skipped files are logged; use
/// [`inspect`] to get them.
pub fn list(dir: &Path) -> Result<Vec<KeyInfo>, KeyError> {
    let listing = inspect(dir)?;
    for s in &listing.skipped {
        tracing::warn!(file = %s.path.display(), reason = %s.reason, "key file skipped");
    }
    Ok(listing.keys)
}

/// `keys generate`: adds a staged key when a signer exists (publish before
/// signing), otherwise creates the first signer. Creates `dir` if missing.
pub fn generate(dir: &Path, now: SystemTime) -> Result<KeyInfo, KeyError> {
    ensure_private_dir(dir).map_err(|source| io_error(dir, source))?;
    let scan = scan(dir, &[])?;
    let has_signer = scan
        .keys
        .iter()
        .any(|k| k.info.status == KeyStatus::Signing);
    let secs = next_activation(&scan, now);
    let kid = key_file::create(dir, |short| {
        if has_signer {
            format!("{STAGED_PREFIX}{short}{KEY_SUFFIX}")
        } else {
            format!("{secs}-{short}{KEY_SUFFIX}")
        }
    })?;
    info_of(dir, &kid)
}

/// `keys rotate`: the newest staged key starts signing (atomic rename to
/// `<now>-<name>.key`); with nothing staged a new signer is generated.
/// The previous signer is retired as of `now` and keeps verifying.
pub fn rotate(dir: &Path, now: SystemTime) -> Result<KeyInfo, KeyError> {
    let scan = scan(dir, &[])?;
    let secs = next_activation(&scan, now);
    let staged = scan
        .keys
        .iter()
        .find(|k| k.info.status == KeyStatus::Staged);
    let kid = match staged {
        Some(key) => {
            promote(dir, &key.info.file, secs)?;
            key.info.kid.clone()
        }
        None => key_file::create(dir, |short| format!("{secs}-{short}{KEY_SUFFIX}"))?,
    };
    info_of(dir, &kid)
}

/// `keys prune`: removes activated keys that stopped signing more than
/// `retain` before `now`. Pass at least the longest token lifetime plus the
/// leeway, so no key that signed a live token is removed (PITFALLS K1).
/// Never removes the signer, a staged key or an unmanaged file.
pub fn prune(dir: &Path, retain: Duration, now: SystemTime) -> Result<Vec<KeyInfo>, KeyError> {
    let scan = scan(dir, &[])?;
    let mut removed = Vec::new();
    for info in scan.keys.into_iter().map(|k| k.info) {
        // Only retired activated keys carry a retirement time (`classify`);
        // the status check guards that invariant, as removal is for good.
        let removable = info.status == KeyStatus::Retired && !info.unmanaged;
        let Some(retired_at) = info.retired_at.filter(|_| removable) else {
            continue;
        };
        if now.duration_since(retired_at).is_ok_and(|age| age > retain) {
            fs::remove_file(&info.file).map_err(|source| io_error(&info.file, source))?;
            removed.push(info);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir).map_err(|source| io_error(dir, source))?;
    }
    Ok(removed)
}

/// Parses the content of a key file (for fuzzing and checks).
#[doc(hidden)]
pub fn parse_key_file(content: &[u8]) -> Result<(), KeyError> {
    key_file::parse_secret(content)
        .map(drop)
        .map_err(|reason| KeyError::BadKeyFile {
            path: PathBuf::new(),
            reason: reason.to_owned(),
        })
}

/// A loaded key: its listing and its material.
pub(super) struct LoadedKey {
    pub(super) info: KeyInfo,
    pub(super) secret: Arc<AsymmetricSecretKey<V4>>,
    pub(super) public: Arc<PublicKeyEntry>,
}

/// What changes when a key file is added, removed or replaced: name,
/// mtime, size and inode of each `*.key` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint(Vec<(OsString, Option<SystemTime>, u64, u64)>);

/// The fingerprint of `dir`, or `None` if it cannot be read.
pub(super) fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        if key_file::role_of(&name.to_string_lossy()).is_none() {
            continue;
        }
        // Follow symlinks (mounted secrets); the inode catches a same-size
        // replacement by rename within one mtime tick.
        let meta = fs::metadata(entry.path()).ok();
        let modified = meta.as_ref().and_then(|m| m.modified().ok());
        let len = meta.as_ref().map_or(0, fs::Metadata::len);
        entries.push((name, modified, len, meta.as_ref().map_or(0, inode)));
    }
    entries.sort();
    Some(Fingerprint(entries))
}

/// The result of reading a directory.
pub(super) struct Scan {
    pub(super) keys: Vec<LoadedKey>,
    pub(super) skipped: Vec<SkippedKeyFile>,
    pub(super) warnings: Vec<String>,
    /// Latest activation time in any file name, loaded or not.
    latest_activation: Option<u64>,
}

/// Reads every key file in `dir`. A file that fails to load is skipped; if
/// `previous` holds a key loaded from the same path, that key is kept (a
/// file being rewritten in place must not make the signer vanish).
pub(super) fn scan(dir: &Path, previous: &[LoadedKey]) -> Result<Scan, KeyError> {
    let entries = fs::read_dir(dir).map_err(|source| KeyError::DirUnreadable {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    let mut scan = Scan {
        keys: Vec::new(),
        skipped: Vec::new(),
        warnings: dir_warnings(dir),
        latest_activation: None,
    };
    for entry in entries.flatten() {
        let Some(role) = key_file::role_of(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        scan.latest_activation = scan.latest_activation.max(role.activation());
        if let Some(material) = read_entry(&entry, previous, &mut scan) {
            let modified = fs::metadata(entry.path()).and_then(|m| m.modified()).ok();
            found.push(Found {
                path: entry.path(),
                role,
                modified,
                material,
            });
        }
    }
    scan.keys = rank(classify(found), &mut scan.warnings);
    Ok(scan)
}

/// A usable key file before statuses are assigned.
struct Found {
    path: PathBuf,
    role: Role,
    modified: Option<SystemTime>,
    material: Material,
}

/// The material of one entry, recording why it was skipped if it is not
/// usable (and falling back to the last good key from the same path).
fn read_entry(entry: &fs::DirEntry, previous: &[LoadedKey], scan: &mut Scan) -> Option<Material> {
    let path = entry.path();
    if entry.file_name().to_str().is_none() {
        scan.skipped
            .push(skip(path, "file name is not UTF-8", false));
        return None;
    }
    match key_file::load(&path) {
        Ok((material, warning)) => {
            scan.warnings.extend(warning);
            Some(material)
        }
        Err(reason) => {
            let old = previous.iter().find(|k| k.info.file == path);
            scan.skipped.push(skip(path, reason, old.is_some()));
            old.map(|k| Material {
                secret: Arc::clone(&k.secret),
                public: Arc::clone(&k.public),
            })
        }
    }
}

/// Assigns statuses. The activated key with the latest time signs; ties on
/// the time are broken by file name so every node reading the same
/// directory picks the same signer. Each activated key retires when the
/// next one was activated.
fn classify(mut found: Vec<Found>) -> Vec<(Option<SystemTime>, LoadedKey)> {
    found.sort_by(|a, b| (a.role.activation(), &a.path).cmp(&(b.role.activation(), &b.path)));
    let times: Vec<u64> = found.iter().filter_map(|f| f.role.activation()).collect();
    let mut activated = 0;
    let mut keys = Vec::with_capacity(found.len());
    for f in found {
        let (status, activated_at, retired_at) = match f.role {
            Role::Activated(secs) => {
                activated += 1;
                let successor = times.get(activated).copied();
                let status = successor.map_or(KeyStatus::Signing, |_| KeyStatus::Retired);
                (status, to_time(secs), successor.and_then(to_time))
            }
            Role::Staged => (KeyStatus::Staged, None, None),
            Role::Unmanaged => (KeyStatus::Retired, None, None),
        };
        let info = KeyInfo {
            kid: f.material.public.kid.clone(),
            status,
            file: f.path,
            activated_at,
            retired_at,
            staged_at: f.modified.filter(|_| status == KeyStatus::Staged),
            unmanaged: f.role == Role::Unmanaged,
        };
        // Staged keys are ordered by when they were written.
        let order_time = if status == KeyStatus::Staged {
            f.modified
        } else {
            activated_at
        };
        let Material { secret, public } = f.material;
        keys.push((
            order_time,
            LoadedKey {
                info,
                secret,
                public,
            },
        ));
    }
    keys
}

/// Orders keys signer, staged, retired, unmanaged (newest first within
/// each) and lists a key found in two files once, under its first place.
fn rank(
    mut keys: Vec<(Option<SystemTime>, LoadedKey)>,
    warnings: &mut Vec<String>,
) -> Vec<LoadedKey> {
    let group = |k: &LoadedKey| match (k.info.status, k.info.unmanaged) {
        (KeyStatus::Signing, _) => 0,
        (KeyStatus::Staged, _) => 1,
        (KeyStatus::Retired, false) => 2,
        (KeyStatus::Retired, true) => 3,
    };
    keys.sort_by(|(ta, a), (tb, b)| {
        group(a)
            .cmp(&group(b))
            .then_with(|| tb.cmp(ta))
            .then_with(|| b.info.file.cmp(&a.info.file))
    });
    let mut unique: Vec<LoadedKey> = Vec::with_capacity(keys.len());
    for (_, key) in keys {
        match unique.iter().find(|k| k.info.kid == key.info.kid) {
            Some(first) => warnings.push(format!(
                "{}: same key as {}; ignored",
                key.info.file.display(),
                first.info.file.display()
            )),
            None => unique.push(key),
        }
    }
    unique
}

/// Renames `next-<name>.key` to `<secs>-<name>.key` (atomic on one
/// filesystem), refusing to overwrite.
fn promote(dir: &Path, staged: &Path, secs: u64) -> Result<(), KeyError> {
    let name = staged
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let target = dir.join(key_file::promoted_name(name, secs));
    if target.exists() {
        return Err(io_error(&target, io::ErrorKind::AlreadyExists.into()));
    }
    fs::rename(staged, &target).map_err(|source| io_error(staged, source))?;
    sync_dir(dir).map_err(|source| io_error(dir, source))
}

/// Activation time for a new signer: `now`, but strictly after every
/// existing activation so the new key is the one that signs.
fn next_activation(scan: &Scan, now: SystemTime) -> u64 {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    scan.latest_activation
        .map_or(now, |t| now.max(t.saturating_add(1)))
}

fn info_of(dir: &Path, kid: &str) -> Result<KeyInfo, KeyError> {
    inspect(dir)?
        .keys
        .into_iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| KeyError::BadKeyFile {
            path: dir.to_path_buf(),
            reason: "the new key could not be read back".to_owned(),
        })
}

fn dir_warnings(dir: &Path) -> Vec<String> {
    mode_of(dir)
        .ok()
        .filter(|mode| mode & 0o077 != 0)
        .map(|mode| format!("{}: directory mode {mode:04o}; use 0700", dir.display()))
        .into_iter()
        .collect()
}

fn skip(path: PathBuf, reason: &str, kept_previous: bool) -> SkippedKeyFile {
    let reason = reason.to_owned();
    SkippedKeyFile {
        path,
        reason,
        kept_previous,
    }
}

fn to_time(secs: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

fn io_error(path: &Path, source: io::Error) -> KeyError {
    let path = path.to_path_buf();
    KeyError::Io { path, source }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> u64 {
    0
}

#[cfg(test)]
mod tests;
