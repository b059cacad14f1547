//! `clawgate serve`: logging, the runtime, the start-up banner, signals.

use anyhow::Context as _;
use clawgate::Config;
use clawgate::config::LogFormat;
use clawgate::gateway::{Gateway, RunningGateway};

/// Runs the gateway until SIGTERM or Ctrl-C; SIGHUP reloads certificates.
pub(crate) fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let gateway = Gateway::build(config).context(crate::TLS_UNAVAILABLE)?;
        let running = gateway.start().await?;
        print_banner(&running);
        wait_for_signals(&running).await;
        running.shutdown().await;
        Ok(())
    })
}

fn print_banner(running: &RunningGateway) {
    let served = running.certificates().current();
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
