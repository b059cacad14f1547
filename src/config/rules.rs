//! The value rules the configuration owns, used by [`Config::validate`]
//! and by the parts that take the values (so a rule has one owner): the
//! upstream URL, user names and scopes, argon2id hashes, and the limits on
//! token lifetimes.
//!
//! [`Config::validate`]: super::Config::validate

use std::fmt;
use std::time::Duration;

use argon2::{ARGON2ID_IDENT, Params, PasswordHash};
use http::HeaderValue;
use http::uri::{Authority, Uri};

/// `[upstream] url`, parsed: `http://host:port` with no path. The only way
/// to build one is [`UpstreamUrl::parse`], so holding one proves the rule.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    authority: Authority,
    /// The `Host` header sent upstream: the upstream's own authority.
    host: HeaderValue,
}

impl UpstreamUrl {
    /// Parses `http://host:port` (a trailing `/` is allowed; no other path,
    /// no query). Other schemes are refused: the upstream is expected on a
    /// private interface, reached over plain HTTP.
    pub fn parse(url: &str) -> Result<Self, InvalidUpstreamUrl> {
        let uri: Uri = url.parse().map_err(|_| InvalidUpstreamUrl)?;
        let path_ok = matches!(
            uri.path_and_query().map(|pq| pq.as_str()),
            None | Some("/" | "")
        );
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(authority)) if path_ok => authority.clone(),
            _ => return Err(InvalidUpstreamUrl),
        };
        // An authority holds only URI characters, all valid in a header
        // value; checked anyway so the proxy's construction cannot fail.
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| InvalidUpstreamUrl)?;
        Ok(Self { authority, host })
    }

    /// `host:port` of the upstream.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `Host` header value sent upstream (the authority).
    pub fn host_header(&self) -> &HeaderValue {
        &self.host
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamUrl(http://{})", self.authority)
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// Why `[upstream] url` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be http://host:port (no path; the upstream is expected on a private interface)")]
pub struct InvalidUpstreamUrl;

/// Parses a `[[auth.users]] password_hash`: an argon2id (version 19) PHC
/// string with a salt, an output and valid parameters. The error is a
/// fixed phrase; it never repeats the hash (offline-attackable).
pub fn parse_password_hash(phc: &str) -> Result<PasswordHash, &'static str> {
    let hash = PasswordHash::new(phc).map_err(|_| "not a PHC string")?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err("not argon2id");
    }
    if hash.version != Some(ARGON2_VERSION) {
        return Err("not argon2 version 19");
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("salt or hash missing");
    }
    Params::try_from(&hash).map_err(|_| "invalid argon2 parameters")?;
    Ok(hash)
}

/// Whether `name` can be a token subject: 1–256 bytes, no control
/// characters (`session_token` refuses others at minting).
pub fn is_subject(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_SUBJECT_BYTES && !name.chars().any(char::is_control)
}

/// Whether `scope` is an RFC 6749 §3.3 scope token of at most 128 bytes,
/// as `session_token` requires.
pub fn is_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_BYTES
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// Upper bound on `[tokens] absolute_timeout`: 100 years. Keeps time
/// arithmetic and moka's durations far from overflow.
pub const MAX_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);
/// Upper bound on `[tokens] verified_cache_entries`. An entry holds one
/// token's verified claims, parsed from at most 4 KiB of token (a typical
/// entry is under 1 KiB), so this bounds the cache's memory as well.
pub const MAX_VERIFIED_CACHE_ENTRIES: u64 = 1_000_000;
/// argon2 version 0x13 (19), the only one accepted.
const ARGON2_VERSION: u32 = 0x13;
/// Longest subject a token carries (`session_token`'s limit).
pub const MAX_SUBJECT_BYTES: usize = 256;
/// Longest scope a token carries (`session_token`'s limit).
const MAX_SCOPE_BYTES: usize = 128;

/// `[cluster] url`, checked: `redis://`, `rediss://` (TLS), `valkey://` or
/// `valkeys://`, a host, an optional port and database number, and no
/// password (that belongs in `password_file`, never in the config).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: String,
    tls: bool,
}

impl RedisUrl {
    /// Checks the URL; the error says what to write instead.
    pub fn parse(url: &str) -> Result<Self, InvalidRedisUrl> {
        let uri: Uri = url.trim().parse().map_err(|_| InvalidRedisUrl::Syntax)?;
        let tls = match uri.scheme_str() {
            Some("redis" | "valkey") => false,
            Some("rediss" | "valkeys") => true,
            _ => return Err(InvalidRedisUrl::Scheme),
        };
        let authority = uri.authority().ok_or(InvalidRedisUrl::Syntax)?;
        if authority.as_str().contains('@') {
            return Err(InvalidRedisUrl::Credentials);
        }
        if authority.host().is_empty() {
            return Err(InvalidRedisUrl::Syntax);
        }
        let db = uri.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(InvalidRedisUrl::Database);
        }
        if uri.query().is_some() {
            return Err(InvalidRedisUrl::Syntax);
        }
        Ok(Self {
            url: url.trim().to_owned(),
            tls,
        })
    }

    /// The URL as written (it holds no secret).
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.url)
    }
}

/// Why a `[cluster] url` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRedisUrl {
    /// Not a URL with a host.
    #[error("is not a Redis URL: use e.g. \"redis://127.0.0.1:6379/0\"")]
    Syntax,
    /// Another scheme.
    #[error("must start with redis:// (or rediss:// for TLS), e.g. \"redis://127.0.0.1:6379/0\"")]
    Scheme,
    /// A user or password in the URL.
    #[error(
        "must not hold a user or password: put the password in [cluster] password_file (mode 0600)"
    )]
    Credentials,
    /// The path is not a database number.
    #[error("the path must be a database number, e.g. \"redis://127.0.0.1:6379/0\"")]
    Database,
}
