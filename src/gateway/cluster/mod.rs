//! Cluster mode: replicas share revocations, replay nonces, the per-user
//! session cap and refresh rotation through a Redis (or Valkey) server.
//!
//! The design is `docs/cluster.md`. In short: the request path never waits
//! on the network to validate a token (revocations are mirrored into the
//! local set by a stream reader); the checks that need the fleet's answer
//! (nonce, refresh, session cap) make one bounded call and refuse with 503
//! when Redis cannot answer in `command_timeout`, never open silently.
//!
//! This file owns the connection: one reconnecting multiplexed connection
//! ([`ConnectionManager`]) for commands, every call bounded by
//! `command_timeout`, errors sorted into the kinds the metrics count. A
//! blocking stream read gets its own connection ([`Cluster::dedicated`]):
//! on the shared one it would stall every other command.
//!
//! [`ConnectionManager`]: redis::aio::ConnectionManager

pub mod metrics;
pub mod nonces;
pub mod refresh;
pub mod revocations;
pub mod server_check;
pub mod sessions;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, FromRedisValue, IntoConnectionInfo};

pub use self::metrics::ClusterMetrics;
use crate::config::{ClusterConfig, ClusterMode, RedisUrl};

/// Why a cluster call did not give an answer. Each kind is a label of
/// `clawgate_cluster_errors_total`; none carries a secret (Redis error
/// texts can echo arguments, so only their kind is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No answer within `command_timeout` (or `connect_timeout`).
    #[error("Redis did not answer in time")]
    Timeout,
    /// The connection failed or was refused.
    #[error("Redis is unreachable")]
    Io,
    /// Redis refused a write: `maxmemory` reached under `noeviction`.
    #[error("Redis is out of memory")]
    OutOfMemory,
    /// A script or command failed on the server (a bug, or a server that
    /// forbids scripts).
    #[error("Redis refused the command: {0}")]
    Server(&'static str),
    /// The answer did not have the expected shape.
    #[error("Redis answered with an unexpected value")]
    Response,
}

impl ClusterError {
    /// The `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::OutOfMemory => "oom",
            Self::Server(_) => "script",
            Self::Response => "response",
        }
    }

    fn from_redis(e: &redis::RedisError) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            Self::Io
        } else if e.code() == Some("OOM") {
            Self::OutOfMemory
        } else if e.kind() == redis::ErrorKind::UnexpectedReturnType
            || e.kind() == redis::ErrorKind::Parse
        {
            Self::Response
        } else {
            Self::Server(server_code(e))
        }
    }
}

/// A closed set of server error codes (the message itself may echo
/// arguments, so it is never kept).
fn server_code(e: &redis::RedisError) -> &'static str {
    match e.code() {
        Some("NOSCRIPT") => "NOSCRIPT",
        Some("BUSY") => "BUSY",
        Some("NOAUTH") => "NOAUTH",
        Some("WRONGPASS") => "WRONGPASS",
        Some("NOPERM") => "NOPERM",
        Some("READONLY") => "READONLY",
        Some("LOADING") => "LOADING",
        Some("WRONGTYPE") => "WRONGTYPE",
        _ => "ERR",
    }
}

/// Why the cluster could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterSetupError {
    /// `[cluster] password_file` could not be used.
    #[error("[cluster] password_file {path}: {why}")]
    PasswordFile {
        /// The file.
        path: String,
        /// What is wrong with it, and the fix.
        why: String,
    },
    /// `[cluster] url` (or `ca_path`) could not be turned into a client.
    #[error("[cluster] url: {0}")]
    Url(String),
}

/// The connection to the shared server, and the settings every cluster
/// piece reads.
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
    config: ClusterConfig,
    node_id: String,
    metrics: Arc<ClusterMetrics>,
    /// The verdict on the server's eviction policy ([`server_check`]).
    server: server_check::ServerCheck,
}

impl Cluster {
    /// Builds the client for `config` (`None` in standalone mode: no socket
    /// is ever opened). Nothing connects here: the first command does, and
    /// the manager reconnects in the background after a drop.
    pub fn open(
        config: &ClusterConfig,
        metrics: Arc<ClusterMetrics>,
    ) -> Result<Option<Arc<Self>>, ClusterSetupError> {
        if config.mode == ClusterMode::Standalone {
            return Ok(None);
        }
        let url =
            RedisUrl::parse(&config.url).map_err(|e| ClusterSetupError::Url(e.to_string()))?;
        let mut info = url
            .as_str()
            .into_connection_info()
            .map_err(|_| ClusterSetupError::Url("is not a Redis URL".to_owned()))?;
        if let Some(path) = &config.password_file {
            let password = read_password_file(path)?;
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = match (&config.ca_path, url.is_tls()) {
            (Some(ca), true) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    ClusterSetupError::Url(format!("ca_path {}: {e}", ca.display()))
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            _ => redis::Client::open(info),
        }
        .map_err(|_| ClusterSetupError::Url("cannot build a client for this URL".to_owned()))?;
        // The manager's own timeouts bound every command and connect; the
        // explicit deadline in `query` is the same bound, kept so the
        // figure is measured where it is counted.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|_| ClusterSetupError::Url("cannot build a client for this URL".to_owned()))?;
        let node_id = if config.node_id.is_empty() {
            default_node_id()
        } else {
            config.node_id.clone()
        };
        Ok(Some(Arc::new(Self {
            client,
            conn,
            config: config.clone(),
            node_id,
            metrics,
            server: server_check::ServerCheck::default(),
        })))
    }

    /// The `[cluster]` settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This replica's name (stream entries, logs).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What [`server_check::spawn`] found out about the server.
    pub fn server_check(&self) -> &server_check::ServerCheck {
        &self.server
    }

    /// The metrics every cluster piece records into.
    pub fn metrics(&self) -> &Arc<ClusterMetrics> {
        &self.metrics
    }

    /// `<prefix>:<suffix>`: every key the gateway writes starts with the
    /// configured prefix, so fleets can share a server.
    pub fn key(&self, suffix: &str) -> String {
        let mut key = String::with_capacity(self.config.prefix.len() + 1 + suffix.len());
        key.push_str(&self.config.prefix);
        key.push(':');
        key.push_str(suffix);
        key
    }

    /// `{<prefix>}:<suffix>`: a key in the one hash slot shared by the
    /// revocation set, its stream and the refresh markers (a Lua script may
    /// only touch keys of one slot on a Redis Cluster).
    pub fn slot_key(&self, suffix: &str) -> String {
        format!("{{{}}}:{suffix}", self.config.prefix)
    }

    /// Runs one command on the shared connection, within `command_timeout`;
    /// `op` names it in the metrics.
    pub async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, ClusterError> {
        let mut conn = self.conn.clone();
        self.timed(op, async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a pipeline on the shared connection, within `command_timeout`.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, ClusterError> {
        let mut conn = self.conn.clone();
        self.timed(op, async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Runs a Lua script (EVALSHA, then EVAL once if the server does not
    /// know it yet), within `command_timeout`.
    pub async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, ClusterError> {
        let mut conn = self.conn.clone();
        self.timed(op, async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// A connection of its own, for a blocking read (`XREAD BLOCK`), with
    /// no response timeout of its own: the caller bounds each read.
    pub async fn dedicated(&self) -> Result<MultiplexedConnection, ClusterError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(None);
        let started = Instant::now();
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(conn)) => {
                self.metrics.observe("connect", started.elapsed());
                Ok(conn)
            }
            Ok(Err(e)) => Err(self.failed("connect", ClusterError::from_redis(&e))),
            Err(_) => Err(self.failed("connect", ClusterError::Timeout)),
        }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let started = Instant::now();
        // Invariant: no request waits on Redis longer than
        // `command_timeout`; past it the call counts as unavailable (the
        // command may still run later, so every write is idempotent or
        // retry-safe).
        match tokio::time::timeout(self.config.command_timeout, call).await {
            Ok(Ok(value)) => {
                self.metrics.observe(op, started.elapsed());
                self.metrics.set_up(true);
                Ok(value)
            }
            Ok(Err(e)) => Err(self.failed(op, ClusterError::from_redis(&e))),
            Err(_) => Err(self.failed(op, ClusterError::Timeout)),
        }
    }

    fn failed(&self, op: &'static str, error: ClusterError) -> ClusterError {
        self.metrics.error(op, &error);
        if matches!(error, ClusterError::Timeout | ClusterError::Io) {
            self.metrics.set_up(false);
        }
        error
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

/// Runs `call` on the current Tokio runtime and waits, on this thread, at
/// most `deadline` for its answer: how a synchronous caller on the
/// blocking pool (a refresh, whose revocation may fsync) asks the fleet.
/// `None` when there is no runtime or no answer in time (the caller then
/// refuses: closed); never a panic, never a hang, even on the thread that
/// drives a single-threaded runtime (it just times out).
pub fn wait_bounded<T: Send + 'static>(
    deadline: Duration,
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The waiter may have given up: nothing to tell then.
        let _ = tx.send(call.await);
    });
    rx.recv_timeout(deadline).ok()
}

/// Lower-case hex of `bytes`: how ids and hashes appear in keys.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `host:pid`.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "clawgate".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Checks `[cluster] password_file` the way [`Cluster::open`] reads it
/// (for `config check`), without keeping the password.
pub fn check_password_file(path: &Path) -> Result<(), ClusterSetupError> {
    read_password_file(path).map(drop)
}

/// Reads the password: the file must not be readable by group or others
/// (the same rule as the signing keys), and the password is its first line.
fn read_password_file(path: &Path) -> Result<String, ClusterSetupError> {
    let fail = |why: String| ClusterSetupError::PasswordFile {
        path: path.display().to_string(),
        why,
    };
    let meta =
        std::fs::metadata(path).map_err(|e| fail(format!("{e}; create it with mode 0600")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "mode is {mode:o}; it holds a secret: chmod 600 it"
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(fail(
            "is empty; write the password on its first line".to_owned(),
        ));
    }
    Ok(password.to_owned())
}
