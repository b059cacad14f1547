//! The TOML schema: serde structs with their documented defaults.
//!
//! Every struct rejects unknown keys. Durations are strings such as `"30s"`,
//! `"24h"` or `"30d"` and are parsed into [`Duration`] while loading, so
//! nothing downstream handles a raw string. `Default` for each struct is the
//! documented default file ([`DEFAULT_CONFIG_TOML`]); a test keeps the two
//! equal.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, limits and timeouts.
    pub server: ServerConfig,
    /// Certificates and the TLS policy options.
    pub tls: TlsConfig,
    /// `Strict-Transport-Security` header.
    pub hsts: HstsConfig,
    /// Signing keys and token lifetimes.
    pub tokens: TokensConfig,
    /// Replay protection for unsafe methods.
    pub replay: ReplayConfig,
    /// How sessions are obtained: pairing, users, rate limits.
    pub auth: AuthConfig,
    /// The service behind the gateway.
    pub upstream: UpstreamConfig,
    /// Prometheus exposition.
    pub metrics: MetricsConfig,
    /// Durable state (revocations).
    pub state: StateConfig,
    /// Structured logs.
    pub log: LogConfig,
    /// Shared state for several replicas (standalone by default).
    pub cluster: ClusterConfig,
}

/// `[server]`: the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Time allowed for the TLS handshake.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request head (slowloris guard). The first
    /// head of a connection must be complete this long after the TLS
    /// handshake, protocol detection included, over HTTP/1.1 and HTTP/2.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (HTTP/2 gets a GOAWAY first).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Time allowed between two chunks of a request body.
    #[serde(deserialize_with = "duration")]
    pub body_read_timeout: Duration,
    /// Total time allowed to receive a whole `/auth/*` or `/admin/revoke`
    /// request body, however it trickles in.
    #[serde(deserialize_with = "duration")]
    pub auth_body_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: u64,
    /// Most TLS connections open at once; further ones are closed at accept.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one
    /// /64); further ones are closed at accept. 0 turns the cap off.
    pub max_connections_per_ip: usize,
    /// Threads serving connections, each running its own event loop; a
    /// connection lives on one for its whole life. 0: one per CPU.
    pub workers: usize,
    /// Peers whose `X-Forwarded-*` headers are trusted (exact addresses).
    pub trusted_proxies: Vec<IpAddr>,
    /// Forward client header fields whose name holds `_` (off by default,
    /// like nginx's `underscores_in_headers`). Names an upstream would read
    /// as a gateway field (`X_Clawgate_Subject`) are dropped either way.
    pub allow_underscores_in_headers: bool,
}

impl ServerConfig {
    /// Most `workers` accepted: far above any core count this runs on, low
    /// enough that a typo cannot start a hundred thousand threads.
    pub const MAX_WORKERS: usize = 1024;

    /// `workers` resolved: the configured count, or one per CPU for 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            shutdown_grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            auth_body_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            max_connections: 16_384,
            max_connections_per_ip: 256,
            workers: 0,
            trusted_proxies: Vec::new(),
            allow_underscores_in_headers: false,
        }
    }
}

/// Key algorithm for generated certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (128-bit security, above RSA-2048's 112).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384 (192-bit security, above RSA-4096).
    EcdsaP384,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// No client certificates are requested.
    #[default]
    Off,
    /// A certificate is requested and checked when sent, but not required.
    Optional,
    /// Every connection must present an allowed certificate.
    Required,
}

/// `[tls]`: certificates. Either generated into `cert_dir`, or provided
/// through `cert_path` + `key_path`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Directory of the generated local root and server certificate.
    pub cert_dir: PathBuf,
    /// A provided certificate chain (PEM); requires `key_path`.
    pub cert_path: Option<PathBuf>,
    /// The provided certificate's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key_path: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated certificate.
    pub hostnames: Vec<String>,
    /// Key algorithm of generated certificates.
    pub key_algorithm: KeyAlgorithm,
    /// Lifetime of a generated server certificate.
    #[serde(deserialize_with = "duration")]
    pub server_cert_validity: Duration,
    /// Lifetime of the generated local root.
    #[serde(deserialize_with = "duration")]
    pub root_validity: Duration,
    /// Renew (and alert) when less than this is left.
    #[serde(deserialize_with = "duration")]
    pub renew_before: Duration,
    /// How often certificate expiry and provided files are checked.
    #[serde(deserialize_with = "duration")]
    pub check_interval: Duration,
    /// Client certificate policy (mutual TLS).
    pub client_auth: ClientAuth,
    /// CA bundle (PEM) that client certificates must chain to.
    pub client_ca_path: Option<PathBuf>,
    /// SHA-256 fingerprints (hex) of allowed client certificates.
    pub client_cert_fingerprints: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_dir: PathBuf::from("~/.zeroclaw/certs"),
            cert_path: None,
            key_path: None,
            hostnames: Vec::new(),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            server_cert_validity: days(90),
            root_validity: days(3650),
            renew_before: days(30),
            check_interval: Duration::from_secs(3600),
            client_auth: ClientAuth::Off,
            client_ca_path: None,
            client_cert_fingerprints: Vec::new(),
        }
    }
}

/// `[hsts]`: the `Strict-Transport-Security` header (RFC 6797).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    /// `max-age` in seconds; 0 tells browsers to forget the policy.
    pub max_age: u64,
    /// Adds `includeSubDomains`.
    pub include_subdomains: bool,
    /// Adds `preload`. Off by default: preloading is hard to undo.
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        Self {
            max_age: 31_536_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

/// `[tokens]`: signing keys and lifetimes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Directory of PASERK `k4.secret` key files.
    pub keys_dir: PathBuf,
    /// `iss` claim minted and required.
    pub issuer: String,
    /// `aud` claim minted and required.
    pub audience: String,
    /// Lifetime of a session token.
    #[serde(deserialize_with = "duration")]
    pub session_ttl: Duration,
    /// Whether refresh tokens are issued.
    pub refresh: bool,
    /// Idle limit: a session not refreshed within this ends (refresh token lifetime).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Absolute limit: no refresh chain outlives its first authentication by more.
    #[serde(deserialize_with = "duration")]
    pub absolute_timeout: Duration,
    /// Window in which a just-spent refresh token may be presented again
    /// (a lost response) without being treated as theft.
    #[serde(deserialize_with = "duration")]
    pub refresh_grace: Duration,
    /// Clock skew allowed on `iat`, `nbf` and `exp`.
    #[serde(deserialize_with = "duration")]
    pub leeway: Duration,
    /// Live sessions per user; the next one evicts the oldest.
    pub max_sessions_per_user: usize,
    /// How often the keys directory is re-read.
    #[serde(deserialize_with = "duration")]
    pub key_poll_interval: Duration,
    /// Most session tokens remembered as verified (signature and claims),
    /// so a token presented again skips the Ed25519 check; 0 turns the
    /// cache off. Revocation, binding and replay checks still run on
    /// every request.
    pub verified_cache_entries: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            keys_dir: PathBuf::from("~/.zeroclaw/keys"),
            issuer: "clawgate".to_owned(),
            audience: "clawgate".to_owned(),
            session_ttl: hours(24),
            refresh: true,
            idle_timeout: hours(72),
            absolute_timeout: days(30),
            refresh_grace: Duration::from_secs(10),
            leeway: Duration::from_secs(30),
            max_sessions_per_user: 5,
            key_poll_interval: Duration::from_secs(2),
            verified_cache_entries: 10_000,
        }
    }
}

/// `[replay]`: nonce + timestamp on unsafe methods.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Whether protected unsafe requests need the replay headers.
    pub enabled: bool,
    /// A timestamp further than this from now is rejected; a nonce is
    /// remembered for this long (plus leeway).
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Methods that need the headers.
    pub methods: Vec<String>,
    /// Most nonces remembered at once; past it new requests are refused
    /// (fail closed) rather than forgetting a live nonce.
    pub max_nonces: u64,
    /// Most live nonces one session may hold (its fair share of
    /// `max_nonces`); past it only that session is refused (429).
    pub max_nonces_per_session: u64,
    /// Most live nonces all sessions of one subject may hold together,
    /// revoked ones included (so logging in again gives no fresh share).
    pub max_nonces_per_subject: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(300),
            methods: ["POST", "PUT", "PATCH", "DELETE"]
                .map(str::to_owned)
                .to_vec(),
            max_nonces: 250_000,
            // 10 % of the default capacity: ≈ 75 protected requests per
            // second sustained over the 330 s an entry lives; ten sessions
            // at their share are needed to fill the cache.
            max_nonces_per_session: 25_000,
            // Two sessions' worth: one user (five sessions by default,
            // plus revoked ones) can hold at most 20 % of the capacity.
            max_nonces_per_subject: 50_000,
        }
    }
}

/// Session binding policy (sender-constrained tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindingPolicy {
    /// Keys offered by clients are ignored.
    #[default]
    Off,
    /// Bound tokens are checked; unbound ones are accepted.
    Optional,
    /// Unbound issuance is refused.
    Required,
}

/// `[auth]`: how sessions are obtained.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Print a one-time pairing code at start-up, exchanged at `/auth/pair`.
    pub pairing: bool,
    /// Wrong pairing codes tolerated from all client addresses together
    /// before pairing locks for everyone (the backstop against guessing
    /// from many addresses).
    pub pairing_max_attempts: u32,
    /// Wrong pairing codes tolerated from one client address (an IPv6 /64
    /// counts as one) before that address is locked out.
    pub pairing_max_attempts_per_client: u32,
    /// How long a pairing lockout lasts.
    #[serde(deserialize_with = "duration")]
    pub pairing_lockout: Duration,
    /// Requests to `/auth/*` allowed per client address per minute.
    pub rate_limit_per_minute: u32,
    /// Login attempts allowed per user name per minute, from all client
    /// addresses together (the ceiling against distributed guessing).
    pub login_attempts_per_user_per_minute: u32,
    /// Login attempts allowed per user name per minute from one client
    /// address (an IPv6 /64 counts as one): a stranger elsewhere exhausting
    /// it does not lock the user out.
    pub login_attempts_per_user_per_client_per_minute: u32,
    /// Session binding policy.
    pub binding: BindingPolicy,
    /// Users that may log in with a password.
    pub users: Vec<UserConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            pairing: true,
            // Ten addresses' worth: ≤ 50 guesses per 15 min, 4,800 a day,
            // against a 60-bit code.
            pairing_max_attempts: 50,
            pairing_max_attempts_per_client: 5,
            pairing_lockout: Duration::from_secs(15 * 60),
            rate_limit_per_minute: 60,
            // Ten addresses' worth of the per-client limit.
            login_attempts_per_user_per_minute: 100,
            login_attempts_per_user_per_client_per_minute: 10,
            binding: BindingPolicy::Off,
            users: Vec::new(),
        }
    }
}

/// One `[[auth.users]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name (the token's `sub`).
    pub name: String,
    /// argon2id PHC string from `clawgate hash-password`.
    pub password_hash: String,
    /// Scopes granted to this user's sessions.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for UserConfig {
    // The hash is not a password, but it is offline-attackable: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// `[upstream]`: the service behind the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL (`http://127.0.0.1:3000`); none means protected paths answer 404.
    pub url: Option<String>,
    /// Time allowed to connect to the upstream (502 beyond).
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response head (504 beyond).
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// Paths (exact, or prefixes ending in `/*`) forwarded without a token.
    pub public_paths: Vec<String>,
    /// Forward the client's `Authorization` header upstream. Dangerous: the
    /// upstream then holds a usable bearer token.
    pub danger_forward_authorization: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            public_paths: Vec::new(),
            danger_forward_authorization: false,
        }
    }
}

/// `[metrics]`: Prometheus text exposition on its own listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether the metrics listener runs.
    pub enabled: bool,
    /// Its address; loopback by default.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
        }
    }
}

/// `[state]`: durable gateway state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the revocation journal.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("~/.zeroclaw/gateway-state"),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// `[log]`: structured logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Filter directive (`info`, `clawgate=debug`, …).
    pub level: String,
    /// One INFO event per request (target `clawgate::access`).
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".to_owned(),
            access_log: true,
        }
    }
}

/// Where session state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMode {
    /// Embedded, per instance: no server, no socket (today's behaviour).
    #[default]
    Standalone,
    /// Revocations, nonces, session caps and refresh state shared through
    /// a Redis or Valkey server.
    Redis,
}

/// `[cluster]`: several replicas sharing state through Redis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `standalone` (default) or `redis`.
    pub mode: ClusterMode,
    /// `redis://host:port/db` or `rediss://…` (TLS). No password here: it
    /// goes in `password_file`.
    pub url: String,
    /// File holding the Redis password (mode 0600, like the keys).
    pub password_file: Option<PathBuf>,
    /// Extra PEM trust anchor for `rediss://` (the system roots otherwise).
    pub ca_path: Option<PathBuf>,
    /// Key prefix, so several fleets can share one server.
    pub prefix: String,
    /// This replica's name in stream entries and logs (default host:pid).
    pub node_id: String,
    /// Time allowed to open a connection.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Deadline of every command on the request path; past it the server
    /// counts as unavailable.
    #[serde(deserialize_with = "duration")]
    pub command_timeout: Duration,
    /// How long one blocking read of the revocation stream waits.
    #[serde(deserialize_with = "duration")]
    pub stream_block: Duration,
    /// How far back the revocation stream reaches; a replica away longer
    /// reloads the snapshot.
    #[serde(deserialize_with = "duration")]
    pub stream_retention: Duration,
    /// A local copy of the revocations older than this makes `/ready`
    /// answer 503 and `/health` degraded.
    #[serde(deserialize_with = "duration")]
    pub stale_after: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            mode: ClusterMode::Standalone,
            url: "redis://127.0.0.1:6379/0".to_owned(),
            password_file: None,
            ca_path: None,
            prefix: "cg".to_owned(),
            node_id: String::new(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(150),
            stream_block: Duration::from_millis(500),
            stream_retention: hours(1),
            stale_after: Duration::from_secs(2),
        }
    }
}

/// The commented default file printed by `clawgate config init`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// Parses a duration string (`"30s"`, `"15m"`, `"24h"`, `"30d"`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// A duration as written: only a string is accepted, but a bare number
/// gets an error that shows the string to write instead.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Integer(i64),
    Float(f64),
    Other(serde::de::IgnoredAny),
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = match RawDuration::deserialize(d)? {
        RawDuration::Text(raw) => raw,
        RawDuration::Integer(n) => {
            return Err(serde::de::Error::custom(format!(
                "{n} is a number; durations are strings with a unit: use a string like \"{n}s\""
            )));
        }
        RawDuration::Float(n) => {
            return Err(serde::de::Error::custom(format!(
                "{n} is a number; durations are strings with a unit: use a string like \"{n}s\" or \"1500ms\""
            )));
        }
        RawDuration::Other(_) => {
            return Err(serde::de::Error::custom(
                "durations are strings with a unit: use a string like \"30s\", \"24h\" or \"30d\"",
            ));
        }
    };
    parse_duration(&raw).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{raw:?}: not a duration (use e.g. \"30s\", \"24h\", \"30d\")"
        ))
    })
}

/// A listen address: an IP address and a port. Host names are refused
/// with the fix, since binding never resolves names.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let raw = String::deserialize(d)?;
    parse_socket_addr(&raw).map_err(serde::de::Error::custom)
}

/// Parses a listen address (`IP:port`); the error says what to write
/// instead (host names such as `localhost` are not resolved).
pub fn parse_socket_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.trim().parse().map_err(|_| {
        format!(
            "{raw:?} is not an IP:port: use an IP address and a port such as \"127.0.0.1:8443\" \
             or \"[::1]:8443\" (\"0.0.0.0:8443\" for every interface); host names are not resolved"
        )
    })
}

const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}
