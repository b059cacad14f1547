//! The revocation value: what is revoked, until when.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// One revocation, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One token, by its `jti`.
    Token {
        /// The token id.
        jti: String,
        /// Last Unix second the token could be accepted (`exp` + leeway).
        until: u64,
    },
    /// A session and its refresh family, by `sid`.
    Session {
        /// The session (refresh family) id.
        sid: String,
        /// Last Unix second any token of the family could be accepted.
        until: u64,
    },
    /// Every token of `sub` with `iat <= issued_before`.
    Subject {
        /// The subject.
        sub: String,
        /// Tokens issued at or before this Unix second are revoked.
        issued_before: u64,
        /// Last Unix second any such token could be accepted.
        until: u64,
    },
}

impl Revocation {
    /// Revokes one token.
    pub fn token(jti: impl Into<String>, until: u64) -> Self {
        Self::Token {
            jti: jti.into(),
            until,
        }
    }

    /// Revokes a session and its refresh family.
    pub fn session(sid: impl Into<String>, until: u64) -> Self {
        Self::Session {
            sid: sid.into(),
            until,
        }
    }

    /// Revokes every token of `sub` issued at or before `issued_before`.
    pub fn subject(sub: impl Into<String>, issued_before: u64, until: u64) -> Self {
        Self::Subject {
            sub: sub.into(),
            issued_before,
            until,
        }
    }

    /// The last Unix second this revocation matters.
    pub fn until(&self) -> u64 {
        match self {
            Self::Token { until, .. }
            | Self::Session { until, .. }
            | Self::Subject { until, .. } => *until,
        }
    }

    /// Tokens issued at or before this Unix second are covered: the cut of
    /// a subject revocation, every token (`u64::MAX`) for a `jti` or `sid`.
    pub(crate) fn issued_before(&self) -> u64 {
        match self {
            Self::Token { .. } | Self::Session { .. } => u64::MAX,
            Self::Subject { issued_before, .. } => *issued_before,
        }
    }

    /// Whether this revocation applies to a token with these claims
    /// (ignoring `until`).
    pub fn covers(&self, jti: &str, sid: &str, sub: &str, iat_unix: u64) -> bool {
        // Ids are public values (they travel inside signed tokens): plain
        // comparisons are fine here.
        match self {
            Self::Token { jti: j, .. } => j == jti,
            Self::Session { sid: s, .. } => s == sid,
            Self::Subject {
                sub: s,
                issued_before,
                ..
            } => s == sub && iat_unix <= *issued_before,
        }
    }

    pub(super) fn id(&self) -> &str {
        match self {
            Self::Token { jti: id, .. }
            | Self::Session { sid: id, .. }
            | Self::Subject { sub: id, .. } => id,
        }
    }

    pub(super) fn validate(&self) -> Result<(), StoreError> {
        let id = self.id();
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(StoreError::InvalidId);
        }
        Ok(())
    }
}

/// Longest id accepted: a 256-bit `jti` is 43 characters; 256 leaves room for
/// user names as `sub` while bounding journal lines and memory.
pub const MAX_ID_BYTES: usize = 256;
