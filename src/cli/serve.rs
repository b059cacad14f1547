//! `clawgate serve`: logging, the runtime, the start-up banner, signals.

use anyhow::Context as _;
use clawgate::Config;
use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::bail;
use clawgate::gateway::PAIRING_CODE_FILE;
use clawgate::gateway::session_manager::credentials::PairingCode;
use clawgate::secret_file::write_secret;

use clawgate::config::{ConfigError, LogFormat, parse_socket_addr};
use clawgate::gateway::{Gateway, RunningGateway};

/// `serve`'s flags that override the file (`--upstream`, `--listen`).
#[derive(Default)]
pub(crate) struct Overrides {
    pub(crate) upstream: Option<String>,
    pub(crate) listen: Option<String>,
}

impl Overrides {
    /// Writes the flags over the loaded values; `preflight` then checks
    /// them with the file's rules ([upstream] url is validated there).
    pub(crate) fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(url) = &self.upstream {
            config.upstream.url = Some(url.clone());
        }
        if let Some(listen) = &self.listen {
            config.server.listen = parse_socket_addr(listen)
                .map_err(|why| ConfigError::Invalid(vec![format!("--listen: {why}")]))?;
        }
        Ok(())
    }
}

/// How `serve` announces itself on stdout.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Banner {
    /// `text` when stdout is a terminal, else `log`.
    Auto,
    /// Lines for a person, the pairing code included.
    Text,
    /// One JSON `ready` line (no code): stdout stays JSON for a journal.
    Log,
}

/// `clawgate pairing`: a fresh code written where the running gateway
/// looks for it every second (`[state] dir`/pairing-code, 0600).
pub(crate) fn new_pairing_code(config: &Config) -> anyhow::Result<()> {
    if !config.auth.pairing {
        return Err(ConfigError::Invalid(vec![
            "[auth] pairing: is false: set it to true to pair with a code".to_owned(),
        ])
        .into());
    }
    let dir = &config.state.dir;
    if !dir.is_dir() {
        bail!(
            "[state] dir: {} does not exist: start `clawgate serve` with this config first",
            dir.display()
        );
    }
    let code = PairingCode::generate(&config.auth).context("generating a pairing code")?;
    let file = dir.join(PAIRING_CODE_FILE);
    write_secret(&file, code.reveal().as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    // The user asked for this code: stdout is its only destination.
    println!("pairing code: {}", code.reveal());
    println!(
        "a running gateway with [state] dir = {} accepts it within 2 s; the previous code no longer works",
        dir.display()
    );
    Ok(())
}

/// Runs the gateway until SIGTERM or Ctrl-C; SIGHUP reloads certificates.
pub(crate) fn run(config: Config, file: Option<&Path>, banner: Banner) -> anyhow::Result<()> {
    let banner = match banner {
        Banner::Auto if std::io::stdout().is_terminal() => Banner::Text,
        Banner::Auto => Banner::Log,
        other => other,
    };
    init_logging(&config)?;
    // Connections run on `[server] workers` threads of their own; this
    // runtime holds the accept loop, the metrics listener and the
    // background loops (renewal, key and pairing-file polls, the cluster).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let facts = Facts {
        file: file.map_or_else(|| "defaults".to_owned(), |f| f.display().to_string()),
        upstream: config
            .upstream
            .url
            .clone()
            .unwrap_or_else(|| "none (set [upstream] url or --upstream)".to_owned()),
        keys: config.tokens.keys_dir.display().to_string(),
        cluster: match config.cluster.mode {
            clawgate::config::ClusterMode::Standalone => "standalone".to_owned(),
            // The URL holds no secret (a rule refuses credentials in it).
            clawgate::config::ClusterMode::Redis => format!("redis {}", config.cluster.url),
        },
    };
    runtime.block_on(async {
        let gateway = Gateway::build(config).context(crate::TLS_UNAVAILABLE)?;
        let running = gateway.start().await?;
        if banner == Banner::Text {
            print_banner(&running, &facts);
        } else {
            print_ready_line(&running, &facts);
        }
        wait_for_signals(&running).await;
        running.shutdown().await;
        Ok(())
    })
}

/// What the banner says about the configuration in use.
struct Facts {
    file: String,
    upstream: String,
    keys: String,
    cluster: String,
}

fn print_banner(running: &RunningGateway, facts: &Facts) {
    let served = running.certificates().current();
    println!("clawgate {}", env!("CARGO_PKG_VERSION"));
    println!("config: {}", facts.file);
    println!("upstream: {}", facts.upstream);
    println!("keys: {}", facts.keys);
    println!("cluster: {}", facts.cluster);
    println!("clawgate listening on https://{}", running.addr());
    println!(
        "certificate sha256 fingerprint: {}",
        served.fingerprint_sha256
    );
    println!("certificate spki pin: {}", served.spki_pin);
    if let Some(root) = running.certificates().root_path() {
        println!("trust this root once: {}", root.display());
    }
    if let Some(code) = running.sessions().pairing_code() {
        // Printed on purpose, once: the operator exchanges it at /auth/pair.
        println!("pairing code: {}", code.reveal());
    }
    if let Some(metrics) = running.metrics_addr() {
        println!("metrics: http://{metrics}/metrics");
    }
}

/// The `ready` event as one JSON line on stdout, like the log lines: the
/// banner's facts and the pairing code's file, never the code.
fn print_ready_line(running: &RunningGateway, facts: &Facts) {
    let served = running.certificates().current();
    let line = serde_json::json!({
        "timestamp": clawgate::clock::rfc3339(std::time::SystemTime::now()),
        "level": "INFO",
        "event": "ready",
        "message": "clawgate ready",
        "version": env!("CARGO_PKG_VERSION"),
        "config": facts.file,
        "upstream": facts.upstream,
        "keys_dir": facts.keys,
        "cluster": facts.cluster,
        "listen": format!("https://{}", running.addr()),
        "certificate_sha256": served.fingerprint_sha256,
        "spki_pin": served.spki_pin,
        "root": running.certificates().root_path().map(|p| p.display().to_string()),
        "pairing_code_file": running.pairing_code_file().map(|p| p.display().to_string()),
        "metrics": running.metrics_addr().map(|a| format!("http://{a}/metrics")),
    });
    println!("{line}");
    if let Some(file) = running.pairing_code_file() {
        tracing::info!(event = "pairing_code_file", file = %file.display(),
            "the one-time pairing code is in this file (0600); `clawgate pairing` makes a new one");
    }
}

#[cfg(unix)]
async fn wait_for_signals(running: &RunningGateway) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => running.reload().await,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_running: &RunningGateway) {
    let _ = tokio::signal::ctrl_c().await;
}

/// JSON or pretty logs on stderr; `RUST_LOG` overrides `[log] level`
/// (which `Config::validate` has already checked). `pretty` uses colours
/// only when stderr is a terminal: escape codes in a journal or a file
/// are noise.
fn init_logging(config: &Config) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("[log] level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}
