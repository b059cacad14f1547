//! What the subcommands print (`keys`, `token` and `hash-password` here;
//! `serve`, `cert` and `request` in their own modules). Each
//! function makes one library call and formats its result; the binary is
//! the only place that writes to stdout.

pub(crate) mod cert;
pub(crate) mod request;
pub(crate) mod serve;

use std::io::BufRead as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clawgate::Config;
use clawgate::clock::rfc3339;
use clawgate::config::BindingPolicy;
use clawgate::gateway::session_manager::binding;
use clawgate::gateway::session_manager::credentials::hash_password;
use clawgate::gateway::session_token::keyring::{self, KeyInfo, KeyRing};
use clawgate::gateway::session_token::{
    self, Confirmation, TokenDraft, TokenError, TokenPolicy, TokenType,
};

/// `clawgate keys generate|rotate|list|prune`.
pub(crate) fn keys(action: &str, dir: &Path, config: &Config) -> anyhow::Result<()> {
    let now = SystemTime::now();
    match action {
        "generate" => print_key(&keyring::generate(dir, now)?),
        "rotate" => {
            let key = keyring::rotate(dir, now)?;
            print_key(&key);
            println!(
                "running gateways pick up the new signer within {:?}",
                config.tokens.key_poll_interval
            );
        }
        "list" => {
            for key in keyring::list(dir)? {
                print_key(&key);
            }
        }
        "prune" => {
            // A key may have signed a token until it retired; that token
            // lives at most this long (refresh tokens live idle_timeout).
            let t = &config.tokens;
            let retain = t.session_ttl.max(t.idle_timeout) + t.leeway;
            let removed = keyring::prune(dir, retain, now)?;
            if removed.is_empty() {
                println!("nothing to prune (keys are kept {retain:?} after they stop signing)");
            }
            for key in removed {
                println!("removed {} ({})", key.kid, key.file.display());
            }
        }
        other => bail!("unknown keys action {other:?}"),
    }
    Ok(())
}

fn print_key(key: &KeyInfo) {
    let when = |t: Option<SystemTime>| t.map(rfc3339).unwrap_or_else(|| "-".to_owned());
    println!(
        "{} {} activated={} retired={} file={}",
        key.status.as_str(),
        key.kid,
        when(key.activated_at),
        when(key.retired_at),
        key.file.display()
    );
}

/// A command-line argument the configuration does not allow (exit 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(String);

/// `clawgate token issue`: mints a session token offline with the signer.
///
/// The token must be one the gateway accepts and can revoke for its whole
/// life: `ttl` may not exceed `[tokens] absolute_timeout` (a revocation
/// lasts that long, no longer), and under `[auth] binding = "required"` it
/// must be bound to `client_key` (a `k4.public` PASERK).
pub(crate) fn token_issue(
    dir: &Path,
    config: &Config,
    sub: &str,
    ttl: Option<Duration>,
    scopes: &[String],
    client_key: Option<&str>,
) -> anyhow::Result<()> {
    let draft = token_draft(config, sub, ttl, scopes, client_key)?;
    let ring =
        KeyRing::open(dir).with_context(|| format!("opening keys directory {}", dir.display()))?;
    let minted = session_token::mint_at(
        &ring,
        &TokenPolicy::from_config(&config.tokens),
        draft,
        SystemTime::now(),
    )?;
    // The user asked for this token: stdout is its only destination.
    println!("{}", minted.expose());
    Ok(())
}

/// Refuses what the gateway would refuse, with the reason and the fix.
fn token_draft(
    config: &Config,
    sub: &str,
    ttl: Option<Duration>,
    scopes: &[String],
    client_key: Option<&str>,
) -> anyhow::Result<TokenDraft> {
    let absolute = config.tokens.absolute_timeout;
    let ttl = ttl.unwrap_or(config.tokens.session_ttl);
    // Refused, not clamped: a silently shorter token surprises whoever
    // scripted the longer one.
    if ttl.as_secs() > absolute.as_secs() {
        return Err(UsageError(format!(
            "--ttl {}s is longer than [tokens] absolute_timeout ({}s): the gateway refuses \
             such a token (revocations last that long, no longer); use a shorter --ttl",
            ttl.as_secs(),
            absolute.as_secs()
        ))
        .into());
    }
    let draft = TokenDraft::session(sub, ttl).with_scope(scopes.iter().cloned());
    let Some(key) = client_key else {
        if config.auth.binding == BindingPolicy::Required {
            return Err(UsageError(
                "[auth] binding = \"required\": the gateway refuses unbound tokens; \
                 pass --client-key with the k4.public PASERK of the key that will sign proofs"
                    .to_owned(),
            )
            .into());
        }
        return Ok(draft);
    };
    let kpid = binding::client_key_id(key)
        .map_err(|_| UsageError("--client-key is not a k4.public PASERK".to_owned()))?;
    Ok(draft.with_cnf(Confirmation {
        kpid: Some(kpid),
        x5t_s256: None,
    }))
}

/// `clawgate token verify`: signature and claims against the keys
/// directory. Revocations live in the running gateway and are not checked.
pub(crate) fn token_verify(dir: &Path, config: &Config, token: &str) -> anyhow::Result<()> {
    let ring =
        KeyRing::open(dir).with_context(|| format!("opening keys directory {}", dir.display()))?;
    let policy = TokenPolicy::from_config(&config.tokens);
    let now = SystemTime::now();
    let verified = match session_token::verify_at(&ring, &policy, token, TokenType::Session, now) {
        Err(TokenError::WrongType) => {
            session_token::verify_at(&ring, &policy, token, TokenType::Refresh, now)
        }
        other => other,
    }
    .map_err(|e| anyhow::anyhow!("token rejected: {} ({e})", e.code()))?;
    let c = verified.claims();
    let shown = serde_json::json!({
        "jti": c.jti, "sub": c.sub, "iss": c.iss, "aud": c.aud, "typ": c.typ.as_str(),
        "iat": rfc3339(c.iat), "nbf": rfc3339(c.nbf), "exp": rfc3339(c.exp),
        "scope": c.scope, "sid": c.sid, "auth_time": rfc3339(c.auth_time), "cnf": c.cnf,
    });
    println!("{}", serde_json::to_string_pretty(&shown)?);
    println!("valid; signed by {}", verified.kid());
    Ok(())
}

/// `clawgate hash-password`: one line from stdin → an argon2id PHC string.
pub(crate) fn hash_password_from_stdin() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password on stdin");
    }
    println!("{}", hash_password(password)?);
    Ok(())
}
