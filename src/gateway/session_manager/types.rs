//! The values the session manager hands out: sessions, token pairs,
//! listings and the `GET /auth/session` view.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::clock::format_rfc3339;
use crate::gateway::session_token::{Claims, Confirmation, MintedToken, TokenType, VerifiedClaims};

/// How a session was obtained (a log and metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueMethod {
    /// The one-time pairing code.
    Pair,
    /// User name and password.
    Login,
    /// A refresh token exchanged for new tokens.
    Refresh,
    /// `clawgate token issue`, or a test.
    Cli,
}

impl IssueMethod {
    /// `pair`, `login`, `refresh` or `cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pair => "pair",
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Cli => "cli",
        }
    }
}

/// An authenticated session: a session token that verified and is not
/// revoked. Only [`SessionManager::authenticate`] builds one, so holding a
/// `Session` proves both checks ran.
///
/// [`SessionManager::authenticate`]: super::SessionManager::authenticate
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// Shared with the cache of verified tokens: a hit copies no claim.
    claims: Arc<VerifiedClaims>,
}

impl Session {
    pub(super) fn new(claims: Arc<VerifiedClaims>) -> Self {
        Self { claims }
    }

    /// The verified claims.
    pub fn claims(&self) -> &VerifiedClaims {
        &self.claims
    }

    /// The subject (user name, or `owner` for a paired client).
    pub fn subject(&self) -> &str {
        self.claims.sub()
    }

    /// The session id (`sid`): the same for every token of one login.
    pub fn session_id(&self) -> &str {
        self.claims.sid()
    }

    /// This token's id.
    pub fn jti(&self) -> &str {
        self.claims.jti()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        self.claims.scopes()
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.has_scope(scope)
    }

    /// When this session token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.claims.exp()
    }
}

impl std::fmt::Debug for Session {
    // Claims are not secrets, but ids are shortened like in the logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.subject())
            .field("sid_prefix", &sid_prefix(self.session_id()))
            .field("scopes", &self.scopes())
            .finish_non_exhaustive()
    }
}

/// A session token and, when refresh is enabled, its refresh token.
///
/// Both strings are bearer secrets: `Debug` prints only the type name, and
/// they are zeroized when the last copy is dropped.
#[derive(Clone)]
pub struct TokenPair {
    session: Arc<MintedToken>,
    refresh: Option<Arc<MintedToken>>,
}

impl TokenPair {
    pub(super) fn new(session: MintedToken, refresh: Option<MintedToken>) -> Self {
        Self {
            session: Arc::new(session),
            refresh: refresh.map(Arc::new),
        }
    }

    /// The token response body: `session_token`, `refresh_token` (when
    /// enabled), `token_type: "Bearer"`, `expires_in` (seconds of the
    /// session token left at `now`) and `expires_at` (RFC 3339).
    pub fn response_json(&self, now: SystemTime) -> Value {
        let exp = self.session.claims().exp;
        let expires_in = exp.duration_since(now).unwrap_or(Duration::ZERO).as_secs();
        let mut body = json!({
            "session_token": self.session.expose(),
            "token_type": "Bearer",
            "expires_in": expires_in,
            "expires_at": format_rfc3339(exp),
        });
        if let (Some(refresh), Some(map)) = (&self.refresh, body.as_object_mut()) {
            map.insert("refresh_token".to_owned(), Value::from(refresh.expose()));
        }
        // The binding granted, so a client sees whether its key was used.
        if let (Some(cnf), Some(map)) = (&self.session.claims().cnf, body.as_object_mut()) {
            map.insert("cnf".to_owned(), json!(cnf));
        }
        body
    }

    /// The session (bearer) token.
    pub fn session_token(&self) -> &str {
        self.session.expose()
    }

    /// The refresh token, when refresh is enabled.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh.as_deref().map(MintedToken::expose)
    }

    /// The session token's claims.
    pub fn session_claims(&self) -> &Claims {
        self.session.claims()
    }

    /// The refresh token's claims, when there is one.
    pub fn refresh_claims(&self) -> Option<&Claims> {
        self.refresh.as_deref().map(MintedToken::claims)
    }

    /// When the session ends unless refreshed: the later of both expiries.
    pub(super) fn live_until(&self) -> SystemTime {
        let session = self.session.claims().exp;
        self.refresh_claims()
            .map_or(session, |r| r.exp.max(session))
    }
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair").finish_non_exhaustive()
    }
}

/// One live session of a subject, for `GET /auth/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// The session id; pass it to `revoke_own` to end that session.
    pub sid: String,
    /// When the user authenticated (login, pairing or issue).
    #[serde(serialize_with = "rfc3339")]
    pub created_at: SystemTime,
    /// When the session ends unless refreshed (the later of its latest
    /// session and refresh token expiries).
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: SystemTime,
    /// Whether this is the session that asked.
    pub current: bool,
}

/// The verified claims of the asking session plus its limits, for
/// `GET /auth/session`. Idle and absolute limits are named separately
/// (PITFALLS R6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Subject.
    pub sub: String,
    /// Session id (the refresh family).
    pub sid: String,
    /// This token's id.
    pub jti: String,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Always `session`.
    pub typ: TokenType,
    /// Key id of the signing key.
    pub kid: String,
    /// Issued at.
    #[serde(serialize_with = "rfc3339")]
    pub iat: SystemTime,
    /// This token expires at.
    #[serde(serialize_with = "rfc3339")]
    pub exp: SystemTime,
    /// When the user authenticated; unchanged by refreshes.
    #[serde(serialize_with = "rfc3339")]
    pub auth_time: SystemTime,
    /// Idle limit: the session ends then unless refreshed before (the
    /// expiry of the refresh token issued with this token). `null` when
    /// refresh is disabled: the session then ends at `exp`.
    #[serde(serialize_with = "rfc3339_opt")]
    pub idle_expires_at: Option<SystemTime>,
    /// Absolute limit: no refresh extends the session past this
    /// (`auth_time` + `[tokens] absolute_timeout`).
    #[serde(serialize_with = "rfc3339")]
    pub absolute_expires_at: SystemTime,
    /// The sender binding (`cnf`), if any.
    pub binding: Option<Confirmation>,
    /// The gateway's `[auth] binding` policy: `off`, `optional` or `required`.
    pub binding_policy: &'static str,
}

/// What an administrator revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRevoke {
    /// One token, by `jti`.
    Token(String),
    /// One session and its refresh family, by `sid`.
    Session(String),
    /// Every token of a subject issued up to now, by `sub`.
    Subject(String),
}

impl AdminRevoke {
    /// `token`, `session` or `subject` (a log label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Session(_) => "session",
            Self::Subject(_) => "subject",
        }
    }
}

/// At most the first 8 characters of a session id, for logs.
pub fn sid_prefix(sid: &str) -> &str {
    sid.get(..SID_PREFIX_LEN).unwrap_or(sid)
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let text = format_rfc3339(*t)
        .ok_or_else(|| serde::ser::Error::custom("time out of the RFC 3339 range"))?;
    s.serialize_str(&text)
}

// serde hands `serialize_with` functions a reference to the field's type.
#[allow(clippy::ref_option)]
fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// Characters of a session id shown in logs: enough to correlate events,
/// far too few (48 of 256 bits) to matter if the id were guessable.
const SID_PREFIX_LEN: usize = 8;

/// A client's address as every log event shows it (field `client`):
/// `ip:port` for a connection (the gateway always knows the port), the
/// bare IP only when a library caller gave no port. Limits key on
/// [`ip`](Self::ip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    ip: std::net::IpAddr,
    port: Option<u16>,
}

impl ClientAddr {
    /// The IP address (what rate limits and lockouts count by).
    pub fn ip(self) -> std::net::IpAddr {
        self.ip
    }
}

impl From<std::net::IpAddr> for ClientAddr {
    fn from(ip: std::net::IpAddr) -> Self {
        Self { ip, port: None }
    }
}

impl From<std::net::SocketAddr> for ClientAddr {
    fn from(peer: std::net::SocketAddr) -> Self {
        Self {
            ip: peer.ip(),
            port: Some(peer.port()),
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            // The same form as `SocketAddr`'s: `[v6]:port`.
            Some(port) => std::net::SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}
