//! The types of `session_token`: policy, drafts, claims, results, errors.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::TokensConfig;

/// What every token must say about who issued it and for whom, and how much
/// clock skew is tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `iss`, minted and required.
    pub issuer: String,
    /// `aud`, minted and required.
    pub audience: String,
    /// Skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Longest `exp − auth_time` minted or accepted (`[tokens]
    /// absolute_timeout`); `None`: no limit. Revocations are sized by this
    /// bound, so a token beyond it would outlive its revocation.
    pub max_lifetime: Option<Duration>,
}

impl TokenPolicy {
    /// A policy from its parts, with no lifetime limit.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, leeway: Duration) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway,
            max_lifetime: None,
        }
    }

    /// The same policy, refusing tokens whose `exp` is more than `limit`
    /// after their `auth_time`.
    #[must_use]
    pub fn with_max_lifetime(mut self, limit: Duration) -> Self {
        self.max_lifetime = Some(limit);
        self
    }

    /// The policy of the `[tokens]` section: no token outlives
    /// `absolute_timeout` from its `auth_time`.
    pub fn from_config(config: &TokensConfig) -> Self {
        Self::new(&config.issuer, &config.audience, config.leeway)
            .with_max_lifetime(config.absolute_timeout)
    }

    /// Whether a token from `auth_time` to `exp` (Unix seconds) is within
    /// `max_lifetime`.
    pub(super) fn allows_lifetime(&self, auth_time: i64, exp: i64) -> bool {
        self.max_lifetime.is_none_or(|limit| {
            let limit = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
            exp.saturating_sub(auth_time) <= limit
        })
    }
}

/// Which kind of token; one is never accepted as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Presented as a bearer token on requests.
    Session,
    /// Exchanged once at `/auth/refresh` for new tokens.
    Refresh,
}

impl TokenType {
    /// The `typ` claim: `session` or `refresh`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Refresh => "refresh",
        }
    }
}

/// The `cnf` claim (RFC 7800): what the presenter must also prove.
/// Unknown members are refused, so a binding is never silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// PASERK `k4.pid` of a client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpid: Option<String>,
    /// base64url SHA-256 of a client certificate (RFC 8705).
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// The claims of a token, times in whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Token id: 32 random bytes, base64url. Revocation is by `jti`.
    pub jti: String,
    /// Subject (user name).
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// `session` or `refresh`.
    pub typ: TokenType,
    /// Issued at.
    pub iat: SystemTime,
    /// Not valid before.
    pub nbf: SystemTime,
    /// Expires at.
    pub exp: SystemTime,
    /// Granted scopes (the `scope` claim; omitted when empty).
    pub scope: Vec<String>,
    /// Session id: 32 random bytes, base64url, the same for every token of
    /// one login (the refresh-token family).
    pub sid: String,
    /// When the user authenticated; carried through refreshes.
    pub auth_time: SystemTime,
    /// Sender binding, if any.
    pub cnf: Option<Confirmation>,
}

/// What to mint. `iss`, `aud`, `iat`, `nbf`, `exp` and `jti` are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDraft {
    /// Subject.
    pub sub: String,
    /// Token type.
    pub typ: TokenType,
    /// Lifetime (whole seconds, at least 1 s).
    pub ttl: Duration,
    /// Scopes (RFC 6749 scope-tokens).
    pub scope: Vec<String>,
    /// Session id to continue (a refresh); `None` starts a new session.
    pub sid: Option<String>,
    /// Original authentication time (a refresh); `None` means now.
    pub auth_time: Option<SystemTime>,
    /// Sender binding.
    pub cnf: Option<Confirmation>,
}

impl TokenDraft {
    /// A draft with no scopes, a fresh session and authentication now.
    pub fn new(sub: impl Into<String>, typ: TokenType, ttl: Duration) -> Self {
        Self {
            sub: sub.into(),
            typ,
            ttl,
            scope: Vec::new(),
            sid: None,
            auth_time: None,
            cnf: None,
        }
    }

    /// A session-token draft.
    pub fn session(sub: impl Into<String>, ttl: Duration) -> Self {
        Self::new(sub, TokenType::Session, ttl)
    }

    /// A refresh-token draft.
    pub fn refresh(sub: impl Into<String>, ttl: Duration) -> Self {
        Self::new(sub, TokenType::Refresh, ttl)
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scope<S: Into<String>>(mut self, scope: impl IntoIterator<Item = S>) -> Self {
        self.scope = scope.into_iter().map(Into::into).collect();
        self
    }

    /// Continues the session `sid`.
    #[must_use]
    pub fn with_sid(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// Carries the original authentication time.
    #[must_use]
    pub fn with_auth_time(mut self, auth_time: SystemTime) -> Self {
        self.auth_time = Some(auth_time);
        self
    }

    /// Binds the token to a client key or certificate.
    #[must_use]
    pub fn with_cnf(mut self, cnf: Confirmation) -> Self {
        self.cnf = Some(cnf);
        self
    }
}

/// A freshly signed token. The token string is a bearer secret: it has no
/// `Display`, its `Debug` prints only the type name, and it is zeroized on
/// drop; [`MintedToken::expose`] is the one way to read it.
pub struct MintedToken {
    token: Zeroizing<String>,
    claims: Claims,
}

impl MintedToken {
    pub(super) fn new(token: Zeroizing<String>, claims: Claims) -> Self {
        Self { token, claims }
    }

    /// The token string, to hand to the client who asked for it.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// The claims it carries.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken").finish_non_exhaustive()
    }
}

/// Claims of a token whose signature and claims were checked. Only
/// `session_token::verify_at` can build one, so taking this type proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    claims: Claims,
    kid: String,
}

impl VerifiedClaims {
    pub(super) fn new(claims: Claims, kid: String) -> Self {
        Self { claims, kid }
    }

    /// All claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Token id.
    pub fn jti(&self) -> &str {
        &self.claims.jti
    }

    /// Subject.
    pub fn sub(&self) -> &str {
        &self.claims.sub
    }

    /// Session id (refresh family).
    pub fn sid(&self) -> &str {
        &self.claims.sid
    }

    /// Granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.claims.scope
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.scope.iter().any(|s| s == scope)
    }

    /// Expiry.
    pub fn exp(&self) -> SystemTime {
        self.claims.exp
    }

    /// Issue time.
    pub fn iat(&self) -> SystemTime {
        self.claims.iat
    }

    /// Original authentication time.
    pub fn auth_time(&self) -> SystemTime {
        self.claims.auth_time
    }

    /// Sender binding, if any.
    pub fn cnf(&self) -> Option<&Confirmation> {
        self.claims.cnf.as_ref()
    }

    /// Session or refresh.
    pub fn token_type(&self) -> TokenType {
        self.claims.typ
    }

    /// The key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Why a token was refused or could not be minted. Messages are fixed and
/// never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than `MAX_TOKEN_LEN`.
    #[error("token too large")]
    TooLarge,
    /// The token does not start with `v4.public.`.
    #[error("not a v4.public token")]
    BadHeader,
    /// The token's structure or encoding is broken.
    #[error("malformed token")]
    Malformed,
    /// The footer is missing, too long, or not exactly `{"kid":"k4.pid.…"}`.
    #[error("bad token footer")]
    BadFooter,
    /// No loaded key has the footer's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify with the key the footer names.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp` is further from `auth_time` than the policy's `max_lifetime`
    /// (`[tokens] absolute_timeout`): no session of this gateway lasts
    /// that long, and no revocation would outlast such a token.
    #[error("token lifetime beyond the absolute limit")]
    LifetimeExceeded,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `typ` is not the type the caller expects (refresh vs session).
    #[error("wrong token type")]
    WrongType,
    /// A claim is missing, of the wrong type or badly formed.
    #[error("malformed claims")]
    MalformedClaims,
    /// Minting: no key is activated for signing.
    #[error("no signing key")]
    NoSigningKey,
    /// Minting: the draft cannot become a token (the reason says which field).
    #[error("cannot mint token: {0}")]
    InvalidDraft(&'static str),
    /// Minting: the signature could not be made.
    #[error("signing failed")]
    Signing,
    /// Minting: the OS random generator failed.
    #[error("random generator failed")]
    Random,
}

impl TokenError {
    /// A stable snake_case code for responses, logs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::BadHeader => "bad_header",
            Self::Malformed => "malformed_token",
            Self::BadFooter => "bad_footer",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeExceeded => "lifetime_exceeded",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongType => "wrong_token_type",
            Self::MalformedClaims => "malformed_claims",
            Self::NoSigningKey => "no_signing_key",
            Self::InvalidDraft(_) => "invalid_draft",
            Self::Signing => "signing_failed",
            Self::Random => "random_failed",
        }
    }

    /// True when a presented token was refused (HTTP: 401 `invalid_token`);
    /// false for failures to mint, which are the server's (500).
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::TooLarge
            | Self::BadHeader
            | Self::Malformed
            | Self::BadFooter
            | Self::UnknownKey
            | Self::BadSignature
            | Self::Expired
            | Self::NotYetValid
            | Self::IssuedInFuture
            | Self::LifetimeExceeded
            | Self::WrongIssuer
            | Self::WrongAudience
            | Self::WrongType
            | Self::MalformedClaims => true,
            Self::NoSigningKey | Self::InvalidDraft(_) | Self::Signing | Self::Random => false,
        }
    }
}
