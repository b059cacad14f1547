//! `clawgate serve`: logging, the runtime, the start-up banner, signals.

use anyhow::Context as _;
use clawgate::Config;
use std::path::Path;

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

/// Runs the gateway until SIGTERM or Ctrl-C; SIGHUP reloads certificates.
pub(crate) fn run(config: Config, file: Option<&Path>) -> anyhow::Result<()> {
    init_logging(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let facts = Facts {
        file: file.map_or_else(|| "defaults".to_owned(), |f| f.display().to_string()),
        upstream: config
            .upstream
            .url
            .clone()
            .unwrap_or_else(|| "none (set [upstream] url or --upstream)".to_owned()),
        keys: config.tokens.keys_dir.display().to_string(),
    };
    runtime.block_on(async {
        let gateway = Gateway::build(config).context(crate::TLS_UNAVAILABLE)?;
        let running = gateway.start().await?;
        print_banner(&running, &facts);
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
}

fn print_banner(running: &RunningGateway, facts: &Facts) {
    let served = running.certificates().current();
    println!("clawgate {}", env!("CARGO_PKG_VERSION"));
    println!("config: {}", facts.file);
    println!("upstream: {}", facts.upstream);
    println!("keys: {}", facts.keys);
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
/// (which `Config::validate` has already checked).
fn init_logging(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("[log] level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
    Ok(())
}
