//! Configuration: where it is found, how it is parsed, and the checks that
//! run before anything starts.
//!
//! [`Config::from_toml`] parses and validates a string (tests need no files);
//! [`Config::load`] finds the file (`--config`, else
//! `~/.zeroclaw/gateway.toml`, else built-in defaults). Every error names the
//! key and the fix, and validation collects every bad key before returning.

mod rules;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

pub use rules::{
    InvalidRedisUrl, InvalidUpstreamUrl, MAX_ABSOLUTE_TIMEOUT, MAX_SUBJECT_BYTES,
    MAX_VERIFIED_CACHE_ENTRIES, RedisUrl, UpstreamUrl, is_scope, is_subject, parse_password_hash,
};
pub use schema::{
    AuthConfig, BindingPolicy, ClientAuth, ClusterConfig, ClusterMode, Config, DEFAULT_CONFIG_TOML,
    HstsConfig, KeyAlgorithm, LogConfig, LogFormat, MetricsConfig, ReplayConfig, ServerConfig,
    StateConfig, TlsConfig, TokensConfig, UpstreamConfig, UserConfig, parse_duration,
    parse_socket_addr,
};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong form.
    #[error("{0}")]
    Parse(String),
    /// One or more values are well-formed but unusable; each entry names its key.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Parses and validates a TOML document. `~` in paths is expanded with
    /// the user's home directory.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut config = parse(text)?;
        config.expand_home(dirs::home_dir().as_deref());
        config.validate()?;
        Ok(config)
    }

    /// Loads the configuration: `path` if given, else
    /// `~/.zeroclaw/gateway.toml` if it exists, else the defaults. Returns
    /// the file that was read, if any.
    pub fn load(path: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let candidate = match path {
            Some(p) => Some(p.to_path_buf()),
            None => dirs::home_dir()
                .map(|h| h.join(".zeroclaw").join("gateway.toml"))
                .filter(|p| p.is_file()),
        };
        let Some(file) = candidate else {
            return Ok((Self::from_toml("")?, None));
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let mut config = Self::from_toml(&text)?;
        // A relative path in the file means the same directory whatever the
        // working directory of the process (a `serve` started elsewhere
        // must not create a second signing key).
        let base = std::path::absolute(&file)
            .ok()
            .and_then(|f| f.parent().map(Path::to_path_buf));
        if let Some(base) = base {
            config.resolve_relative(&base);
        }
        Ok((config, Some(file)))
    }

    /// Joins every relative path of the configuration onto `base` (the
    /// config file's directory).
    pub fn resolve_relative(&mut self, base: &Path) {
        for p in self.paths_mut() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Every file or directory path of the configuration (what `~` and
    /// relative-path resolution apply to).
    fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            &mut self.tls.cert_dir,
            &mut self.tokens.keys_dir,
            &mut self.state.dir,
        ]
        .into_iter()
        .chain(
            [
                &mut self.tls.cert_path,
                &mut self.tls.key_path,
                &mut self.tls.client_ca_path,
                &mut self.cluster.password_file,
                &mut self.cluster.ca_path,
            ]
            .into_iter()
            .flatten(),
        )
    }

    /// Checks values that parse but cannot work, collecting every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.validate_tls(&mut problems);
        self.tokens.check(&mut problems);
        self.validate_replay(&mut problems);
        self.auth.check(&mut problems);
        self.upstream.check(&mut problems);
        self.validate_server(&mut problems);
        self.validate_log(&mut problems);
        self.validate_cluster(&mut problems);
        problems.into_result()
    }

    fn validate_cluster(&self, p: &mut Problems) {
        let c = &self.cluster;
        if c.mode == ClusterMode::Standalone {
            return;
        }
        if let Err(why) = rules::RedisUrl::parse(&c.url) {
            p.check(false, "cluster", "url", &why.to_string());
        }
        p.check(
            !c.connect_timeout.is_zero(),
            "cluster",
            "connect_timeout",
            "must be above 0",
        );
        p.check(
            !c.command_timeout.is_zero() && c.command_timeout <= std::time::Duration::from_secs(5),
            "cluster",
            "command_timeout",
            "must be above 0 and at most \"5s\" (a request waits this long at most)",
        );
        p.check(
            c.stream_block >= std::time::Duration::from_millis(10),
            "cluster",
            "stream_block",
            "must be at least \"10ms\"",
        );
        p.check(
            c.stale_after > c.stream_block + c.command_timeout,
            "cluster",
            "stale_after",
            "must be longer than stream_block + command_timeout (an idle stream read returns that often)",
        );
        p.check(
            c.stream_retention >= std::time::Duration::from_secs(60),
            "cluster",
            "stream_retention",
            "must be at least \"60s\"",
        );
        p.check(
            !c.prefix.is_empty()
                && c.prefix.len() <= 32
                && c.prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "cluster",
            "prefix",
            "must be 1 to 32 letters, digits, '-' or '_'",
        );
        p.check(
            c.node_id.len() <= 64 && !c.node_id.contains(char::is_whitespace),
            "cluster",
            "node_id",
            "must be at most 64 characters with no spaces (empty: host:pid)",
        );
        // Each replica would print its own code and count wrong guesses
        // alone, so N replicas would allow N times the attempts.
        p.check(
            !self.auth.pairing,
            "auth",
            "pairing",
            "must be false with [cluster] mode = \"redis\": pairing codes are per replica; \
             issue sessions with `clawgate token issue`, passwords ([[auth.users]]) or pair on a standalone gateway",
        );
    }

    fn validate_log(&self, p: &mut Problems) {
        // The same parser `serve` uses, so `config check` catches what would
        // otherwise fail only at start-up.
        let parsed = tracing_subscriber::EnvFilter::try_new(&self.log.level);
        p.check(
            parsed.is_ok(),
            "log",
            "level",
            "is not a filter directive (e.g. \"info\", \"clawgate=debug,warn\")",
        );
    }

    fn validate_server(&self, p: &mut Problems) {
        let s = &self.server;
        p.check(
            s.max_connections > 0,
            "server",
            "max_connections",
            "must be at least 1",
        );
        p.check(
            s.workers <= ServerConfig::MAX_WORKERS,
            "server",
            "workers",
            &format!(
                "must be at most {} (0: one per CPU)",
                ServerConfig::MAX_WORKERS
            ),
        );
        p.check(
            s.max_header_bytes >= 1024,
            "server",
            "max_header_bytes",
            "must be at least 1024",
        );
        p.check(
            !s.header_read_timeout.is_zero(),
            "server",
            "header_read_timeout",
            "must be above 0",
        );
        p.check(
            !s.idle_timeout.is_zero(),
            "server",
            "idle_timeout",
            "must be above 0",
        );
        p.check(
            !s.auth_body_timeout.is_zero(),
            "server",
            "auth_body_timeout",
            "must be above 0",
        );
        p.check(
            !s.handshake_timeout.is_zero(),
            "server",
            "handshake_timeout",
            "must be above 0",
        );
        p.check(
            self.metrics.listen != s.listen || !self.metrics.enabled || s.listen.port() == 0,
            "metrics",
            "listen",
            "must differ from [server] listen",
        );
    }

    fn validate_tls(&self, p: &mut Problems) {
        let t = &self.tls;
        p.check(
            t.cert_path.is_some() == t.key_path.is_some(),
            "tls",
            "cert_path",
            "cert_path and key_path go together: set both or neither",
        );
        p.check(
            t.renew_before < t.server_cert_validity,
            "tls",
            "renew_before",
            "must be shorter than server_cert_validity",
        );
        p.check(
            t.server_cert_validity < t.root_validity,
            "tls",
            "server_cert_validity",
            "must be shorter than root_validity",
        );
        p.check(
            !t.check_interval.is_zero(),
            "tls",
            "check_interval",
            "must be above 0",
        );
        let wants_client_certs = t.client_auth != ClientAuth::Off;
        let has_trust = t.client_ca_path.is_some() || !t.client_cert_fingerprints.is_empty();
        p.check(
            !wants_client_certs || has_trust,
            "tls",
            "client_auth",
            "needs client_ca_path or client_cert_fingerprints",
        );
        for fp in &t.client_cert_fingerprints {
            p.check(
                normalize_fingerprint(fp).is_some(),
                "tls",
                "client_cert_fingerprints",
                &format!("{fp:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"),
            );
        }
        for host in &t.hostnames {
            p.check(
                !host.trim().is_empty() && !host.contains(char::is_whitespace),
                "tls",
                "hostnames",
                &format!("{host:?} is not a host name"),
            );
        }
    }

    fn validate_replay(&self, p: &mut Problems) {
        let r = &self.replay;
        p.check(!r.window.is_zero(), "replay", "window", "must be above 0");
        p.check(
            r.max_nonces >= 1,
            "replay",
            "max_nonces",
            "must be at least 1",
        );
        for (key, value) in [
            ("max_nonces_per_session", r.max_nonces_per_session),
            ("max_nonces_per_subject", r.max_nonces_per_subject),
        ] {
            p.check(value >= 1, "replay", key, "must be at least 1");
        }
        for m in &r.methods {
            p.check(
                http::Method::from_bytes(m.as_bytes()).is_ok()
                    && m.chars().all(|c| c.is_ascii_uppercase()),
                "replay",
                "methods",
                &format!("{m:?} is not an HTTP method in upper case"),
            );
        }
    }

    fn expand_home(&mut self, home: Option<&Path>) {
        for p in self.paths_mut() {
            *p = expand_tilde(p, home);
        }
    }
}

impl TokensConfig {
    /// The `[tokens]` rules alone (part of [`Config::validate`]), for parts
    /// built from this section without a whole `Config`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.check(&mut problems);
        problems.into_result()
    }

    fn check(&self, p: &mut Problems) {
        let t = self;
        // Tokens carry whole seconds: a sub-second lifetime would mint
        // tokens that expire as they are issued.
        p.check(
            t.session_ttl.as_secs() >= 1,
            "tokens",
            "session_ttl",
            "must be at least 1s",
        );
        // The idle limit is the refresh token's lifetime; with refresh off
        // it is unused, but 0 is refused either way.
        p.check(
            !t.idle_timeout.is_zero() && (!t.refresh || t.idle_timeout.as_secs() >= 1),
            "tokens",
            "idle_timeout",
            "must be at least 1s",
        );
        p.check(
            t.absolute_timeout >= t.session_ttl,
            "tokens",
            "absolute_timeout",
            "must be at least session_ttl",
        );
        p.check(
            t.absolute_timeout <= MAX_ABSOLUTE_TIMEOUT,
            "tokens",
            "absolute_timeout",
            "must be at most 100 years",
        );
        p.check(
            t.leeway.as_secs() <= 300,
            "tokens",
            "leeway",
            "must be at most 5m: a larger skew weakens expiry",
        );
        p.check(
            t.max_sessions_per_user >= 1,
            "tokens",
            "max_sessions_per_user",
            "must be at least 1",
        );
        p.check(
            !t.issuer.is_empty(),
            "tokens",
            "issuer",
            "must not be empty",
        );
        p.check(
            !t.audience.is_empty(),
            "tokens",
            "audience",
            "must not be empty",
        );
        p.check(
            !t.key_poll_interval.is_zero(),
            "tokens",
            "key_poll_interval",
            "must be above 0",
        );
        p.check(
            t.verified_cache_entries <= MAX_VERIFIED_CACHE_ENTRIES,
            "tokens",
            "verified_cache_entries",
            "must be at most 1000000 (0 turns the cache off)",
        );
    }
}

impl AuthConfig {
    /// The `[auth]` rules alone (part of [`Config::validate`]), for parts
    /// built from this section without a whole `Config`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.check(&mut problems);
        problems.into_result()
    }

    fn check(&self, p: &mut Problems) {
        let a = self;
        p.check(
            a.pairing_max_attempts >= 1,
            "auth",
            "pairing_max_attempts",
            "must be at least 1",
        );
        p.check(
            a.pairing_max_attempts_per_client >= 1,
            "auth",
            "pairing_max_attempts_per_client",
            "must be at least 1",
        );
        p.check(
            a.rate_limit_per_minute >= 1,
            "auth",
            "rate_limit_per_minute",
            "must be at least 1",
        );
        p.check(
            a.login_attempts_per_user_per_minute >= 1,
            "auth",
            "login_attempts_per_user_per_minute",
            "must be at least 1",
        );
        p.check(
            a.login_attempts_per_user_per_client_per_minute >= 1,
            "auth",
            "login_attempts_per_user_per_client_per_minute",
            "must be at least 1",
        );
        let mut seen = std::collections::HashSet::new();
        for user in &a.users {
            // Every name must be usable as a token subject and every scope
            // as a scope claim: found at start-up, not at the first login.
            p.check(
                is_subject(&user.name),
                "auth.users",
                "name",
                &format!(
                    "{:?} must be 1-256 bytes without control characters",
                    user.name
                ),
            );
            p.check(
                seen.insert(user.name.as_str()),
                "auth.users",
                "name",
                &format!("{:?} appears twice", user.name),
            );
            // The phrase names the user and the problem, never the hash.
            if let Err(problem) = parse_password_hash(&user.password_hash) {
                p.check(
                    false,
                    "auth.users",
                    "password_hash",
                    &format!(
                        "for {:?} is not a usable argon2id hash ({problem}; make one with `clawgate hash-password`)",
                        user.name
                    ),
                );
            }
            if let Some(scope) = user.scopes.iter().find(|s| !is_scope(s)) {
                p.check(
                    false,
                    "auth.users",
                    "scopes",
                    &format!(
                        "user {:?}: scope {scope:?} must be 1-128 visible ASCII characters, no space, '\"' or '\\'",
                        user.name
                    ),
                );
            }
        }
    }
}

impl UpstreamConfig {
    /// `url` parsed, `None` when no upstream is configured.
    pub fn upstream_url(&self) -> Result<Option<UpstreamUrl>, ConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        UpstreamUrl::parse(url)
            .map(Some)
            .map_err(|why| ConfigError::Invalid(vec![upstream_problem(url, why)]))
    }

    fn check(&self, p: &mut Problems) {
        if let Err(problem) = self.upstream_url() {
            p.0.push(problem.to_string());
        }
    }
}

fn upstream_problem(url: &str, why: InvalidUpstreamUrl) -> String {
    format!("[upstream] url: {url:?} {why}")
}

/// Normalizes a SHA-256 fingerprint written as hex (any case, optional
/// colons) to 64 lower-case hex digits.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, None))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(text, e.inner(), Some(&path))
    })
}

/// Renders a parse error as one line: `line N: [section] key: message`.
fn toml_error(text: &str, err: &toml::de::Error, path: Option<&str>) -> ConfigError {
    let line = err
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let key = path
        .filter(|p| *p != ".")
        .map(|p| match p.rsplit_once('.') {
            Some((section, key)) => format!("[{section}] {key}: "),
            None => format!("{p}: "),
        });
    let message = err.message().trim();
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    ConfigError::Parse(format!("{at}{}{message}", key.unwrap_or_default()))
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, section: &str, key: &str, why: &str) {
        if !ok {
            self.0.push(format!("[{section}] {key}: {why}"));
        }
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

#[cfg(test)]
mod tests;
