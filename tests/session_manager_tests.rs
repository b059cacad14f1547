//! The session manager at library level, with real keys, a real revocation
//! journal in a temporary directory, and a manual clock: issuing (pairing,
//! login, CLI), refresh rotation, reuse detection and the grace window, the
//! idle and absolute limits, the per-user limit, logout and revocation,
//! restarts, a failing store, binding, start-up configuration errors, the
//! stable error codes, and secrets kept out of Debug output and logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::logs::Logs;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate::clock::{Clock, ManualClock};
use clawgate::config::{AuthConfig, BindingPolicy, StateConfig, TokensConfig, UserConfig};
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use clawgate::gateway::session_manager::revocation_store::{RevocationStore, StoreHealth};
use clawgate::gateway::session_manager::{
    AdminRevoke, IssueMethod, OpenError, Session, SessionError, SessionManager, TokenPair,
};
use clawgate::gateway::session_token::keyring::KeyRing;
use clawgate::gateway::session_token::{Confirmation, TokenError};
use futures_util::FutureExt;
use tempfile::TempDir;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
const ALICE_PW: &str = "correct horse battery staple";
const BOB_PW: &str = "hunter2-but-longer";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn client() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn user(name: &str, password: &str, scopes: &[&str]) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password_hash: insecure_hash_password_for_tests(password).unwrap(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

struct Fx {
    tmp: TempDir,
    clock: Arc<ManualClock>,
    keyring: Arc<KeyRing>,
    store: Arc<RevocationStore>,
    sm: SessionManager,
    tokens: TokensConfig,
    auth: AuthConfig,
}

impl Fx {
    fn new() -> Self {
        Self::with(|_, _| {})
    }

    fn with(tweak: impl FnOnce(&mut TokensConfig, &mut AuthConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let mut tokens = TokensConfig {
            keys_dir: tmp.path().join("keys"),
            ..TokensConfig::default()
        };
        let mut auth = AuthConfig {
            users: vec![
                user("alice", ALICE_PW, &["read"]),
                user("bob", BOB_PW, &["read", "write"]),
            ],
            ..AuthConfig::default()
        };
        tweak(&mut tokens, &mut auth);
        let state = tmp.path().join("state");
        let (keyring, store, sm) = open(&state, &tokens, &auth, &clock);
        Self {
            tmp,
            clock,
            keyring,
            store,
            sm,
            tokens,
            auth,
        }
    }

    /// A process restart: the manager and the store are dropped, the
    /// store is re-opened on the same state directory.
    fn restart(self) -> Self {
        let Self {
            tmp,
            clock,
            keyring,
            store,
            sm,
            tokens,
            auth,
        } = self;
        drop(sm);
        drop(store);
        drop(keyring);
        let (keyring, store, sm) = open(&tmp.path().join("state"), &tokens, &auth, &clock);
        Self {
            tmp,
            clock,
            keyring,
            store,
            sm,
            tokens,
            auth,
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn issue(&self, sub: &str, scopes: &[&str]) -> TokenPair {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.sm.issue(sub, scopes, None, IssueMethod::Cli).unwrap()
    }

    fn login(&self, name: &str, password: &str) -> Result<TokenPair, SessionError> {
        self.sm.login(name, password, client(), None)
    }

    fn auth(&self, pair: &TokenPair) -> Result<Session, SessionError> {
        self.sm.authenticate(pair.session_token())
    }

    fn refresh(&self, pair: &TokenPair) -> Result<TokenPair, SessionError> {
        self.sm.refresh(pair.refresh_token().unwrap())
    }

    fn admin(&self) -> Session {
        let pair = self.issue("root", &["admin"]);
        self.auth(&pair).unwrap()
    }
}

/// Opens the manager as the gateway does: keys from `tokens.keys_dir`,
/// revocations and the session index from `state`.
fn open(
    state: &Path,
    tokens: &TokensConfig,
    auth: &AuthConfig,
    clock: &Arc<ManualClock>,
) -> (Arc<KeyRing>, Arc<RevocationStore>, SessionManager) {
    let state = StateConfig {
        dir: state.to_path_buf(),
    };
    let sm = SessionManager::open(tokens, auth, &state, clock.clone()).unwrap();
    (Arc::clone(sm.keyring()), Arc::clone(sm.store()), sm)
}

fn x5t(byte: u8) -> Confirmation {
    Confirmation {
        kpid: None,
        x5t_s256: Some(URL_SAFE_NO_PAD.encode([byte; 32])),
    }
}

mod session_manager {
    mod binding;
    mod issuing;
    mod journal_format;
    mod refresh;
    mod revocation;
    mod secrets;
    mod session_end;
    mod views;
}
