//! One key file: what its name says it is for, parsing its PASERK content,
//! and writing a new one.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::version4::V4;
use zeroize::Zeroizing;

use super::KeyError;
use crate::secret_file::{mode_of, write_secret};

/// What a file name says a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// `<unix_secs>-<name>.key`.
    Activated(u64),
    /// `next-<name>.key`.
    Staged,
    /// Any other `*.key`.
    Unmanaged,
}

impl Role {
    /// The activation time, for activated keys.
    pub(super) fn activation(self) -> Option<u64> {
        match self {
            Self::Activated(secs) => Some(secs),
            Self::Staged | Self::Unmanaged => None,
        }
    }
}

/// The role of the file `name`; `None` for files that are not key files
/// (hidden, or not ending in `.key`, such as an atomic write's temp file).
pub(super) fn role_of(name: &str) -> Option<Role> {
    if name.starts_with('.') {
        return None;
    }
    let stem = name.strip_suffix(KEY_SUFFIX)?;
    if stem
        .strip_prefix(STAGED_PREFIX)
        .is_some_and(|rest| !rest.is_empty())
    {
        return Some(Role::Staged);
    }
    let activated = stem.split_once('-').and_then(|(digits, rest)| {
        let plausible = !rest.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let secs: u64 = digits.parse().ok().filter(|_| plausible)?;
        // Only times representable as SystemTime count as activation times.
        UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
        Some(Role::Activated(secs))
    });
    Some(activated.unwrap_or(Role::Unmanaged))
}

/// The name `<secs>-<rest>` a staged file `next-<rest>` gets when promoted.
pub(super) fn promoted_name(staged_name: &str, secs: u64) -> String {
    let rest = staged_name
        .strip_prefix(STAGED_PREFIX)
        .unwrap_or(staged_name);
    format!("{secs}-{rest}")
}

/// The public half of a key with its PASERK forms.
#[derive(Debug)]
pub(super) struct PublicKeyEntry {
    /// PASERK `k4.pid.…`.
    pub(super) kid: String,
    pub(super) key: AsymmetricPublicKey<V4>,
    /// PASERK `k4.public.…`.
    pub(super) paserk: String,
}

/// The keys read from one file.
#[derive(Clone)]
pub(super) struct Material {
    pub(super) secret: Arc<AsymmetricSecretKey<V4>>,
    pub(super) public: Arc<PublicKeyEntry>,
}

/// Loads one key file, with a warning if others may read it. The error is a
/// fixed reason, never the content.
pub(super) fn load(path: &Path) -> Result<(Material, Option<String>), &'static str> {
    let meta = fs::metadata(path).map_err(|_| "cannot be read")?;
    if !meta.is_file() {
        return Err("not a regular file");
    }
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(TOO_LARGE);
    }
    let mut content = Zeroizing::new(Vec::new());
    File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut content))
        .map_err(|_| "cannot be read")?;
    let material = parse_secret(&content)?;
    let warning = mode_of(path)
        .ok()
        .filter(|mode| mode & 0o077 != 0)
        .map(|mode| {
            let path = path.display();
            format!("{path}: mode {mode:04o} lets others read a secret key; use 0600")
        });
    Ok((material, warning))
}

/// Parses `k4.secret.…`: one line, surrounding whitespace allowed.
pub(super) fn parse_secret(content: &[u8]) -> Result<Material, &'static str> {
    if content.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(TOO_LARGE);
    }
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8 text")?;
    let line = text.trim();
    if line.is_empty() {
        return Err("empty");
    }
    if line.contains(['\n', '\r']) {
        return Err("more than one line");
    }
    if line.starts_with("k4.public.") {
        return Err("holds a k4.public key; a key file holds a k4.secret key");
    }
    if !line.starts_with("k4.secret.") {
        return Err("not a PASERK k4.secret key");
    }
    // pasetors checks the length and that the public half matches the seed.
    let secret = AsymmetricSecretKey::<V4>::try_from(line)
        .map_err(|_| "invalid k4.secret key (encoding, length or public half)")?;
    let public = AsymmetricPublicKey::<V4>::try_from(&secret).map_err(|_| "invalid public half")?;
    Ok(Material {
        secret: Arc::new(secret),
        public: Arc::new(public_entry(public)?),
    })
}

/// Generates a key and writes it (0600, atomic) as `dir/name(short id)`,
/// refusing to overwrite. Returns its kid.
pub(super) fn create(dir: &Path, name: impl FnOnce(&str) -> String) -> Result<String, KeyError> {
    let pair = AsymmetricKeyPair::<V4>::generate().map_err(|_| KeyError::Generation)?;
    let entry = public_entry(pair.public).map_err(|_| KeyError::Generation)?;
    let short = entry.kid.strip_prefix(KID_PREFIX).unwrap_or(&entry.kid);
    let path = dir.join(name(short.get(..SHORT_ID_LEN).unwrap_or(short)));
    if path.exists() {
        return Err(KeyError::Io {
            path,
            source: io::ErrorKind::AlreadyExists.into(),
        });
    }
    let mut line = Zeroizing::new(String::new());
    FormatAsPaserk::fmt(&pair.secret, &mut *line).map_err(|_| KeyError::Generation)?;
    line.push('\n');
    write_secret(&path, line.as_bytes()).map_err(|source| KeyError::Io { path, source })?;
    Ok(entry.kid)
}

fn public_entry(key: AsymmetricPublicKey<V4>) -> Result<PublicKeyEntry, &'static str> {
    let mut kid = String::new();
    FormatAsPaserk::fmt(&Id::from(&key), &mut kid).map_err(|_| "cannot compute key id")?;
    let mut paserk = String::new();
    FormatAsPaserk::fmt(&key, &mut paserk).map_err(|_| "cannot encode public key")?;
    Ok(PublicKeyEntry { kid, key, paserk })
}

/// Suffix of every key file.
pub(super) const KEY_SUFFIX: &str = ".key";
/// Prefix of staged key files.
pub(super) const STAGED_PREFIX: &str = "next-";
const KID_PREFIX: &str = "k4.pid.";
/// Characters of the kid in generated file names: 12 base64url characters
/// are 72 bits, so two keys of one directory never share a name in practice
/// (and `create` refuses to overwrite if they did).
const SHORT_ID_LEN: usize = 12;
/// A key file is one line of about 97 bytes (`k4.secret.` + 86 base64
/// characters + newline); 1 KiB leaves room for whitespace and bounds what a
/// stray large file costs to read.
const MAX_KEY_FILE_LEN: u64 = 1024;
const TOO_LARGE: &str = "too large for a key file";

#[cfg(test)]
mod tests;
