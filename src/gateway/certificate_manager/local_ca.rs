//! The local CA on disk (generated mode): the long-lived root in `ca.crt` /
//! `ca.key` and the short-lived server leaf it signs in `gateway.crt` /
//! `gateway.key`; when each is due, and how they are written.
//!
//! The root is never regenerated silently: it is replaced only when it is
//! due ([`root_renewal_due`]: well before it expires, with a loud warning
//! that clients must trust the new `ca.crt`) or on explicit request
//! (`clawgate cert generate --new-root`). An expired or half-present root is
//! an error for the operator to resolve.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{
    CA_CERT, CA_KEY, CertError, CertInfo, LEAF_CERT, LEAF_KEY, LoadedCert, PemPair, generate_root,
    inspect, issue_server_cert, load_files, load_pem, parse_chain, renew_threshold,
};
use crate::clock::rfc3339;
use crate::config::TlsConfig;
use crate::secret_file;

/// How long before its expiry the local root is renewed: the largest of
/// 2 × `renew_before`, a tenth of the root's lifetime, and
/// `server_cert_validity` (so a leaf issued under a root that is not due
/// never outlives it), capped at half the root's lifetime (so a short root
/// is not renewed on every check). Defaults: 10-year root → 365 days.
pub fn root_renew_threshold(config: &TlsConfig, root: &CertInfo) -> Duration {
    let lifetime = root
        .not_after
        .duration_since(root.not_before)
        .unwrap_or(Duration::ZERO);
    (config.renew_before * 2)
        .max(lifetime / 10)
        .max(config.server_cert_validity)
        .min(lifetime / 2)
}

/// Whether the local root is due for renewal at `now`.
pub fn root_renewal_due(config: &TlsConfig, root: &CertInfo, now: SystemTime) -> bool {
    root.remaining_at(now) <= root_renew_threshold(config, root)
}

/// The root in `dir`: created when absent, renewed (loudly) when due.
pub(super) fn ensure_root(
    dir: &Path,
    config: &TlsConfig,
    now: SystemTime,
) -> Result<PemPair, CertError> {
    let (crt, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (crt.exists(), key.exists()) {
        (true, true) => {
            let root = read_root(dir)?;
            let info = inspect_pem(&root.cert_pem)?;
            check_not_expired(dir, &info, now)?;
            if root_renewal_due(config, &info, now) {
                return renew_root(dir, config, &info, now);
            }
            Ok(root)
        }
        (false, false) => {
            let root = write_root(dir, config, now)?;
            let path = crt.display();
            tracing::warn!(
                event = "local_root_generated",
                %path,
                "generated a new local root; clients must trust this ca.crt"
            );
            Ok(root)
        }
        _ => Err(CertError::RootIncomplete {
            dir: dir.to_path_buf(),
        }),
    }
}

/// An expired root is an error, never a reason to regenerate silently.
pub(super) fn check_not_expired(
    dir: &Path,
    root: &CertInfo,
    now: SystemTime,
) -> Result<(), CertError> {
    if root.not_after < now {
        return Err(CertError::RootExpired {
            path: dir.join(CA_CERT),
            not_after: rfc3339(root.not_after),
        });
    }
    Ok(())
}

/// Replaces a due root with a new one and says so loudly: every client that
/// trusts only the old `ca.crt` rejects the gateway once the leaf is
/// re-issued under the new root.
pub(super) fn renew_root(
    dir: &Path,
    config: &TlsConfig,
    old: &CertInfo,
    now: SystemTime,
) -> Result<PemPair, CertError> {
    let root = write_root(dir, config, now)?;
    let new = inspect_pem(&root.cert_pem)?;
    let ca_cert = dir.join(CA_CERT);
    let path = ca_cert.display();
    let (old_not_after, new_not_after) = (rfc3339(old.not_after), rfc3339(new.not_after));
    tracing::warn!(
        event = "local_root_renewed",
        alert = "local_root_renewed",
        %path,
        old_fingerprint = %old.fingerprint_sha256,
        %old_not_after,
        new_fingerprint = %new.fingerprint_sha256,
        %new_not_after,
        "the local root was renewed before it expires: every client must now trust the new ca.crt; \
         clients that trust only the old root will reject the gateway"
    );
    Ok(root)
}

/// Writes a new root (key first, so a reader that sees the new certificate
/// finds its key).
pub(super) fn write_root(
    dir: &Path,
    config: &TlsConfig,
    now: SystemTime,
) -> Result<PemPair, CertError> {
    let root = generate_root(config.key_algorithm, config.root_validity, now)?;
    write(&dir.join(CA_KEY), root.key_pem.as_bytes(), true)?;
    write(&dir.join(CA_CERT), root.cert_pem.as_bytes(), false)?;
    Ok(root)
}

/// The stored leaf when still usable, else a new one.
pub(super) fn ensure_leaf(
    dir: &Path,
    root: &PemPair,
    config: &TlsConfig,
    now: SystemTime,
) -> Result<LoadedCert, CertError> {
    match load_files(&dir.join(LEAF_CERT), &dir.join(LEAF_KEY), now) {
        Ok(loaded) if leaf_is_usable(&loaded, root, config, now) => Ok(loaded),
        Ok(_) | Err(_) => issue_and_write_leaf(dir, root, config, now),
    }
}

/// Whether a served chain's second certificate is exactly the root `root`
/// (the generated layout: leaf, then the local root).
pub(super) fn chains_to(loaded: &LoadedCert, root: &PemPair) -> bool {
    let root_der = parse_chain(root.cert_pem.as_bytes()).ok();
    let root_der = root_der.as_ref().and_then(|c| c.first());
    loaded
        .certified
        .cert
        .get(1)
        .zip(root_der)
        .is_some_and(|(served, current)| served.as_ref() == current.as_ref())
}

/// A stored leaf is reused only if it chains to the current root, covers
/// every configured name and is not yet due for renewal.
fn leaf_is_usable(
    loaded: &LoadedCert,
    root: &PemPair,
    config: &TlsConfig,
    now: SystemTime,
) -> bool {
    let chained = chains_to(loaded, root);
    let names_ok = config
        .hostnames
        .iter()
        .all(|h| loaded.info.sans.contains(h));
    let due = loaded.info.remaining_at(now) <= renew_threshold(config, &loaded.info);
    chained && names_ok && !due
}

/// Issues a leaf under `root` and writes it with its chain. The leaf never
/// outlives its root.
pub(super) fn issue_and_write_leaf(
    dir: &Path,
    root: &PemPair,
    config: &TlsConfig,
    now: SystemTime,
) -> Result<LoadedCert, CertError> {
    let root_left = inspect_pem(&root.cert_pem)?.remaining_at(now);
    let leaf = issue_server_cert(
        root,
        &config.hostnames,
        config.key_algorithm,
        config.server_cert_validity.min(root_left),
        now,
    )?;
    let chain = format!("{}{}", leaf.cert_pem, root.cert_pem);
    let loaded = load_pem(chain.as_bytes(), leaf.key_pem.as_bytes(), now)?;
    // Key first: a reader that sees the new chain must find its key.
    write(&dir.join(LEAF_KEY), leaf.key_pem.as_bytes(), true)?;
    write(&dir.join(LEAF_CERT), chain.as_bytes(), false)?;
    Ok(loaded)
}

pub(super) fn read_root(dir: &Path) -> Result<PemPair, CertError> {
    Ok(PemPair {
        cert_pem: read_string(&dir.join(CA_CERT))?,
        key_pem: read_string(&dir.join(CA_KEY))?,
    })
}

pub(super) fn inspect_pem(pem: &str) -> Result<CertInfo, CertError> {
    let chain = parse_chain(pem.as_bytes())?;
    let first = chain
        .first()
        .ok_or(CertError::NoCertificate { path: None })?;
    inspect(first)
}

pub(super) fn read_string(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertError> {
    let result = if secret {
        secret_file::write_secret(path, contents)
    } else {
        secret_file::write_public(path, contents)
    };
    result.map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}
