//! TEMPORARY STUB (integration scaffolding; replaced by the real module).
#![allow(missing_docs, clippy::needless_pass_by_value, unused_variables)]

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::config::{AuthConfig, TokensConfig};
use crate::gateway::credentials::PairingCode;
use crate::gateway::keyring::KeyRing;
use crate::gateway::revocation_store::RevocationStore;
use crate::gateway::session_token::{Claims, Confirmation, VerifiedClaims};

pub struct SessionManager {
    keyring: Arc<KeyRing>,
    store: Arc<RevocationStore>,
}
pub enum IssueMethod {
    Pair,
    Login,
    Refresh,
    Cli,
}
pub struct Session {
    claims: VerifiedClaims,
}
impl Session {
    pub fn claims(&self) -> &VerifiedClaims {
        &self.claims
    }
    pub fn subject(&self) -> &str {
        self.claims.sub()
    }
    pub fn session_id(&self) -> &str {
        self.claims.sid()
    }
    pub fn jti(&self) -> &str {
        self.claims.jti()
    }
    pub fn scopes(&self) -> &[String] {
        self.claims.scopes()
    }
    pub fn has_scope(&self, s: &str) -> bool {
        self.claims.has_scope(s)
    }
    pub fn expires_at(&self) -> SystemTime {
        self.claims.exp()
    }
}
pub struct TokenPair;
impl TokenPair {
    pub fn response_json(&self, now: SystemTime) -> serde_json::Value {
        serde_json::Value::Null
    }
    pub fn session_token(&self) -> &str {
        ""
    }
    pub fn refresh_token(&self) -> Option<&str> {
        None
    }
    pub fn session_claims(&self) -> &Claims {
        unreachable!()
    }
}
#[derive(serde::Serialize)]
pub struct SessionSummary {
    pub sid: String,
    pub current: bool,
}
#[derive(serde::Serialize)]
pub struct SessionInfo;
pub enum AdminRevoke {
    Token(String),
    Session(String),
    Subject(String),
}
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("x")]
    X,
    #[error("internal")]
    Internal,
}
impl SessionError {
    pub fn code(&self) -> &'static str {
        "x"
    }
}
impl SessionManager {
    pub fn new(
        tokens: &TokensConfig,
        auth: &AuthConfig,
        keyring: Arc<KeyRing>,
        store: Arc<RevocationStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SessionError> {
        Ok(Self { keyring, store })
    }
    pub fn pairing_code(&self) -> Option<&PairingCode> {
        None
    }
    pub fn pair(
        &self,
        offered_code: &str,
        client: IpAddr,
        binding: Option<Confirmation>,
    ) -> Result<TokenPair, SessionError> {
        Err(SessionError::X)
    }
    pub fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
        binding: Option<Confirmation>,
    ) -> Result<TokenPair, SessionError> {
        Err(SessionError::X)
    }
    pub fn issue(
        &self,
        subject: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
        method: IssueMethod,
    ) -> Result<TokenPair, SessionError> {
        Err(SessionError::X)
    }
    pub fn refresh(&self, refresh_token: &str) -> Result<TokenPair, SessionError> {
        Err(SessionError::X)
    }
    pub fn authenticate(&self, token: &str) -> Result<Session, SessionError> {
        Err(SessionError::X)
    }
    pub fn logout(&self, session: &Session) -> Result<(), SessionError> {
        Ok(())
    }
    pub fn list(&self, session: &Session) -> Vec<SessionSummary> {
        Vec::new()
    }
    pub fn revoke_own(&self, session: &Session, target: &str) -> Result<(), SessionError> {
        Ok(())
    }
    pub fn admin_revoke(&self, session: &Session, what: AdminRevoke) -> Result<(), SessionError> {
        Ok(())
    }
    pub fn info(&self, session: &Session) -> SessionInfo {
        SessionInfo
    }
    pub fn session_end(
        &self,
        session: &Session,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::pending())
    }
    pub fn store(&self) -> &Arc<RevocationStore> {
        &self.store
    }
    pub fn keyring(&self) -> &Arc<KeyRing> {
        &self.keyring
    }
}
