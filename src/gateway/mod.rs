//! The gateway: the composition root and the parts a request goes through.
//!
//! A request's path, and the module that owns each step:
//!
//! 1. accept: [`server`] (connection caps, handshake and idle timeouts);
//! 2. TLS 1.3: [`tls_config`] (policy, client certificates) with the
//!    certificate from [`certificate_manager`] (issue, renew, hot swap);
//! 3. HTTP: [`http`] (router, security headers, limits);
//! 4. auth: [`http::auth`] checks the bearer token ([`session_token`],
//!    keys in [`session_token::keyring`]; a verified token is remembered
//!    in [`session_manager::verified_cache`]) and the session
//!    ([`session_manager`]: revocations, binding, credentials);
//! 5. replay: [`replay_protection`] (nonces, timestamps);
//! 6. proxy: [`http::proxy`] forwards to the upstream.
//!
//! [`metrics`] is read by all of them. This file wires the parts together
//! and holds no crypto.

pub mod certificate_manager;
pub mod cluster;
pub mod http;
pub mod metrics;
pub mod replay_protection;
pub mod server;
pub mod session_manager;
pub mod session_token;
pub mod tls_config;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::certificate_manager::CertificateManager;
use self::cluster::Cluster;
use self::cluster::revocations::RevocationSync;
use self::http::auth::PublicPaths;
use self::http::proxy::Proxy;
use self::http::ready::UpstreamProbe;
use self::http::security_headers::SecurityHeaders;
use self::http::{AppState, HealthProbe, HttpLimits, SharedState};
use self::metrics::Metrics;
use self::replay_protection::ReplayGuard;
use self::server::{ServeOptions, Workers};
use self::session_manager::SessionManager;
use self::session_manager::binding::ProofChecker;
use self::session_manager::credentials::RateLimiter;
use self::session_manager::revocation_store::StoreHealth;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, UpstreamUrl};
use crate::error::Error;

/// A configured gateway, ready to bind. Building it loads (or generates)
/// the certificate first: with no usable certificate there is no gateway,
/// and never a plaintext fallback.
pub struct Gateway {
    config: Config,
    clock: Arc<dyn Clock>,
    certs: Arc<CertificateManager>,
    metrics: Arc<Metrics>,
    tls: Arc<rustls::ServerConfig>,
    sessions: Arc<SessionManager>,
    replay: Arc<ReplayGuard>,
    proxy: Option<Proxy>,
    /// The shared server in `mode = "redis"`.
    cluster: Option<Arc<Cluster>>,
    /// Keeps the revocations in step with the fleet (`mode = "redis"`).
    revocation_sync: Option<Arc<RevocationSync>>,
    /// Probes the upstream for `/ready` (present with `proxy`).
    upstream_probe: Option<(Arc<UpstreamProbe>, UpstreamUrl)>,
}

impl Gateway {
    /// Builds the gateway on the system clock.
    pub fn build(config: Config) -> Result<Self, Error> {
        Self::build_with_clock(config, Arc::new(SystemClock))
    }

    /// Builds the gateway on a given clock (tests move time by hand). Runs
    /// [`preflight`](Self::preflight) first, so a `Config` made in code
    /// meets the same rules as a loaded one.
    pub fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        Self::preflight(&config, clock.as_ref())?;
        let certs = Arc::new(CertificateManager::init(&config.tls, Arc::clone(&clock))?);
        let mut metrics = Metrics::new();
        // Standalone: `None`, no socket is ever opened and no cluster
        // metric exists.
        let cluster = match config.cluster.mode {
            crate::config::ClusterMode::Standalone => None,
            crate::config::ClusterMode::Redis => {
                Cluster::open(&config.cluster, metrics.register_cluster())?
            }
        };
        let metrics = Arc::new(metrics);
        certs.publish_expiry(&metrics.certs);
        let client_verifier = tls_config::client_auth::client_verifier(&config.tls)?;
        let tls = tls_config::server_config(certs.resolver(), client_verifier)?;
        // Keys, then revocations, then the session index, all before the
        // first connection is accepted (PITFALLS R2).
        let sessions = Arc::new(
            SessionManager::open(
                &config.tokens,
                &config.auth,
                &config.state,
                Arc::clone(&clock),
            )?
            .with_cache_lookups(metrics.tokens.cache_lookups())
            .with_cluster(cluster.clone()),
        );
        // Hooked before anything can revoke: every local revocation from
        // here on is queued for the fleet (sent once `start` runs).
        let revocation_sync = cluster
            .as_ref()
            .and_then(|c| RevocationSync::install(Arc::clone(c), Arc::clone(sessions.store())));
        let replay = Arc::new(
            ReplayGuard::new(&config.replay, config.tokens.leeway).with_cluster(cluster.clone()),
        );
        if let Some(sync) = &revocation_sync {
            let replay = Arc::clone(&replay);
            sync.reseed_nonces_from(Box::new(move |now| replay.nonces_to_reseed(now)));
        }
        let upstream_url = config.upstream.upstream_url()?;
        let proxy = upstream_url.as_ref().map(|url| {
            Proxy::new(url, &config.upstream, &config.server)
                .with_metrics(Arc::clone(&metrics.upstream))
        });
        let upstream_probe = upstream_url.map(|url| (Arc::new(UpstreamProbe::default()), url));
        Ok(Self {
            config,
            clock,
            certs,
            metrics,
            tls: Arc::new(tls),
            sessions,
            replay,
            proxy,
            cluster,
            revocation_sync,
            upstream_probe,
        })
    }

    /// Everything `serve` checks before it creates or binds anything, and
    /// all that `clawgate config check` runs: the configuration rules
    /// ([`Config::validate`]), then the environment they name: provided
    /// certificate and key files load and match and are valid at `clock`'s
    /// now, and the client CA bundle and pins build a verifier. Reads
    /// files, writes nothing (generated certificates and keys are made by
    /// [`build`](Self::build), not here).
    pub fn preflight(config: &Config, clock: &dyn Clock) -> Result<(), Error> {
        config.validate()?;
        // A named file that is not there is a configuration error (exit 64)
        // naming the key and the path, not a TLS failure.
        let t = &config.tls;
        let mut missing = Vec::new();
        for (key, path, fix) in [
            (
                "cert_path",
                &t.cert_path,
                "point it at your certificate chain (PEM), or remove cert_path and key_path to use a generated certificate",
            ),
            (
                "key_path",
                &t.key_path,
                "point it at the certificate's private key (PEM), or remove cert_path and key_path to use a generated certificate",
            ),
            (
                "client_ca_path",
                &t.client_ca_path,
                "point it at the PEM bundle of the CAs that sign client certificates",
            ),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.exists()) {
                missing.push(format!(
                    "[tls] {key}: {} does not exist; {fix}",
                    path.display()
                ));
            }
        }
        if config.cluster.mode == crate::config::ClusterMode::Redis
            && let Some(path) = &config.cluster.password_file
            && let Err(e) = cluster::check_password_file(path)
        {
            missing.push(e.to_string());
        }
        if !missing.is_empty() {
            return Err(crate::config::ConfigError::Invalid(missing).into());
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert_path, &config.tls.key_path) {
            certificate_manager::load_files(cert, key, clock.now())?;
        }
        tls_config::client_auth::client_verifier(&config.tls)?;
        Ok(())
    }

    /// The session manager (pairing code, CLI issuance).
    pub fn sessions(&self) -> &Arc<SessionManager> {
        &self.sessions
    }

    /// The certificate manager (fingerprints, root path, swaps).
    pub fn certificates(&self) -> &Arc<CertificateManager> {
        &self.certs
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The shared server, in `[cluster] mode = "redis"`.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Binds the listeners and starts serving in the background.
    pub async fn start(self) -> Result<RunningGateway, Error> {
        // Before the first accept: the nonce cache is empty, so timestamps
        // a previous process may have accepted are refused from here on.
        let floor = replay_protection::restart_floor(&self.config.state.dir, self.clock.as_ref());
        self.replay.refuse_before(floor.floor_unix);
        let listener = bind(self.config.server.listen).await?;
        let workers = Workers::start(self.config.server.worker_threads())
            .map_err(|source| io("starting the worker threads", source))?;
        // Serve once the floor's second is over, so no honest request is
        // stamped below it; meanwhile connections wait in the backlog.
        tokio::time::sleep(floor.wait).await;
        let addr = listener
            .local_addr()
            .map_err(|source| io("reading the listen address", source))?;
        let (metrics_addr, metrics_task) = if self.config.metrics.enabled {
            let (bound, task) =
                server::serve_metrics(self.config.metrics.listen, Arc::clone(&self.metrics))
                    .await?;
            (Some(bound), Some(task))
        } else {
            (None, None)
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = http::router(
            self.app_state(),
            SecurityHeaders::new(&self.config.hsts),
            &self.limits(),
        );
        // The current code is always in this file (0600, in the 0700
        // state directory): written now, so a code left by an earlier run
        // never becomes valid again, and re-read every second.
        let pairing_file = self.config.state.dir.join(PAIRING_CODE_FILE);
        let pairing_task = Arc::clone(&self.sessions).spawn_pairing_file(pairing_file.clone());
        let pairing_file = pairing_task.as_ref().map(|_| pairing_file);
        let probe_task = self
            .upstream_probe
            .as_ref()
            .map(|(probe, url)| Arc::clone(probe).spawn(url, self.config.upstream.connect_timeout));
        let background = [
            Arc::clone(&self.certs).spawn_upkeep(Arc::clone(&self.metrics.certs)),
            Arc::clone(self.sessions.keyring()).spawn_watcher(self.config.tokens.key_poll_interval),
            Arc::clone(self.sessions.store()).spawn_health_gauge(Arc::clone(&self.metrics.http)),
        ];
        // Standalone: none (no socket is opened).
        let mut cluster_tasks = self
            .revocation_sync
            .as_ref()
            .map(RevocationSync::spawn)
            .unwrap_or_default();
        if let Some(cluster) = &self.cluster {
            cluster_tasks.push(cluster::server_check::spawn(Arc::clone(cluster)));
        }
        let opts = self.serve_options();
        let tls = self.tls;
        let tls_metrics = Arc::clone(&self.metrics.tls);
        let proxy = self.proxy.clone();
        let task = tokio::spawn(async move {
            let stop = async {
                let _ = stop_rx.await;
            };
            server::serve(listener, tls, app, opts, tls_metrics, &workers, stop).await;
            // The server has drained (or given up on) its connections; what
            // it does not track stops now: tunnels, the metrics listener and
            // the background loops.
            if let Some(proxy) = proxy {
                proxy.close_tunnels().await;
            }
            for task in background
                .into_iter()
                .chain(cluster_tasks)
                .chain(metrics_task)
                .chain(probe_task)
                .chain(pairing_task)
            {
                task.abort();
            }
            // Last: the tunnels closed on the workers, which stop now.
            drop(workers);
        });
        tracing::info!(event = "listening", %addr, "clawgate listening (TLS 1.3 only)");
        Ok(RunningGateway {
            addr,
            metrics_addr,
            pairing_file,
            stop: Some(stop_tx),
            task,
            certs: self.certs,
            sessions: self.sessions,
            metrics: self.metrics,
        })
    }

    fn app_state(&self) -> AppState {
        let store = Arc::clone(self.sessions.store());
        // Only the code: the reason names files and OS errors, and
        // `/health` answers anyone. The reason was logged when it arose.
        let store_probe: HealthProbe = Arc::new(move || match store.health() {
            StoreHealth::Healthy => None,
            StoreHealth::Degraded { code, .. } => Some(("revocation_store", code)),
        });
        let sessions = Arc::clone(&self.sessions);
        let index_probe: HealthProbe = Arc::new(move || {
            sessions
                .index_issue()
                .map(|_| ("session_index", "journal_write_failed"))
        });
        let mut health = vec![store_probe, index_probe];
        if let Some(sync) = &self.revocation_sync {
            // Cluster mode: this replica's copy of the fleet's revocations
            // is older than `stale_after` (Redis unreachable or the reader
            // behind): `/health` degraded, `/ready` 503, so a load balancer
            // drops only this replica. It keeps serving from its copy.
            let sync = Arc::clone(sync);
            health.push(Arc::new(move || {
                sync.is_stale().then_some(("cluster", "cluster_stale"))
            }));
        }
        if let Some(cluster) = &self.cluster {
            // Fail closed: a Redis that may evict revocations or spent
            // nonces could silently reopen them.
            let cluster = Arc::clone(cluster);
            health.push(Arc::new(move || {
                cluster
                    .server_check()
                    .eviction_risk()
                    .then_some(("cluster", "redis_eviction_policy"))
            }));
        }
        AppState::new(SharedState {
            metrics: Arc::clone(&self.metrics),
            health,
            sessions: Arc::clone(&self.sessions),
            replay: Arc::clone(&self.replay),
            proofs: Arc::new(ProofChecker::new(Arc::clone(&self.replay))),
            public_paths: PublicPaths::new(&self.config.upstream.public_paths),
            proxy: self.proxy.clone(),
            upstream_probe: self.upstream_probe.as_ref().map(|(p, _)| Arc::clone(p)),
            auth_limiter: Arc::new(RateLimiter::new(self.config.auth.rate_limit_per_minute)),
            clock: Arc::clone(&self.clock),
        })
    }

    fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_body_bytes: usize::try_from(self.config.server.max_body_bytes)
                .unwrap_or(usize::MAX),
            body_read_timeout: self.config.server.body_read_timeout,
            auth_body_timeout: self.config.server.auth_body_timeout,
            access_log: self.config.log.access_log,
        }
    }

    fn serve_options(&self) -> ServeOptions {
        let s = &self.config.server;
        ServeOptions {
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            handshake_timeout: s.handshake_timeout,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_header_bytes: s.max_header_bytes,
            shutdown_grace: s.shutdown_grace,
        }
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    pairing_file: Option<std::path::PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    certs: Arc<CertificateManager>,
    sessions: Arc<SessionManager>,
    metrics: Arc<Metrics>,
}

impl RunningGateway {
    /// The file holding the current pairing code (when pairing is on).
    pub fn pairing_code_file(&self) -> Option<&std::path::Path> {
        self.pairing_file.as_deref()
    }

    /// The HTTPS address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics address actually bound, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The certificate manager (swaps, fingerprints).
    pub fn certificates(&self) -> &Arc<CertificateManager> {
        &self.certs
    }

    /// The session manager (pairing code, revocations).
    pub fn sessions(&self) -> &Arc<SessionManager> {
        &self.sessions
    }

    /// Reloads what can be reloaded without a restart (SIGHUP): provided
    /// certificate files and the keys directory.
    pub async fn reload(&self) {
        let certs = Arc::clone(&self.certs);
        let metrics = Arc::clone(&self.metrics.certs);
        let keyring = Arc::clone(self.sessions.keyring());
        let _ = tokio::task::spawn_blocking(move || {
            certs.reload_files_and_report(&metrics);
            certs.refresh_and_report(&metrics);
            keyring.reload().log();
        })
        .await;
    }

    /// Stops accepting, lets in-flight requests finish within the grace
    /// period, and returns when the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// The file in `[state] dir` holding the current one-time pairing code;
/// `clawgate pairing` writes a new one there.
pub const PAIRING_CODE_FILE: &str = "pairing-code";

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| io(&listen_failure("server", addr, &source), source))
}

/// `[section] listen: cannot listen on ADDR (why): fix`. The OS error is
/// kept as the error's source, so it is not repeated here.
pub(crate) fn listen_failure(section: &str, addr: SocketAddr, error: &std::io::Error) -> String {
    let fix = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process (another clawgate?) holds that port: stop it, or set another address"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that address: use one it has, or 0.0.0.0"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: use a port from 1024 up, or grant CAP_NET_BIND_SERVICE"
        }
        _ => "set another address",
    };
    format!("[{section}] listen: cannot listen on {addr} ({fix})")
}

fn io(context: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: context.to_owned(),
        source,
    }
}
