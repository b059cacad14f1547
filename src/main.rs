//! The `clawgate` command line: parse, call the library, print, exit.
//!
//! Exit status: 0 on success, 64 for a usage or configuration error, 1 for
//! a runtime failure, each with a one-line message on stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
use clawgate::Config;
use clawgate::clock::SystemClock;
use clawgate::config::{ConfigError, DEFAULT_CONFIG_TOML};
use clawgate::gateway::Gateway;

/// clawgate: a TLS 1.3 gateway with stateless PASETO v4 sessions.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (defaults work with no config file).
    Serve {
        /// Config file (default: ~/.zeroclaw/gateway.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The service to put behind the gateway, e.g. http://127.0.0.1:3000
        /// (overrides [upstream] url).
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// Address to listen on, an IP:port such as 127.0.0.1:8443
        /// (overrides [server] listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Start-up banner: `text` (for a person, pairing code included),
        /// `log` (one JSON `ready` line on stdout, no code; the code is in
        /// `[state] dir`/pairing-code), or `auto` (text on a terminal).
        #[arg(long, value_enum, default_value_t = cli::serve::Banner::Auto)]
        banner: cli::serve::Banner,
    },
    /// Make a fresh one-time pairing code that the running gateway accepts
    /// within 2 s (the previous code stops working).
    Pairing {
        /// Config file (default lookup when omitted).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a commented default config, or validate one.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage the signing keys (PASERK files in the keys directory).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        dirs: KeysDir,
    },
    /// Issue or verify a session token offline.
    Token {
        #[command(subcommand)]
        action: TokenAction,
        #[command(flatten)]
        dirs: KeysDir,
    },
    /// Read a password from stdin and print its argon2id hash.
    HashPassword,
    /// Make a signed request with a bound session, like curl
    /// (`request login|pair|refresh|logout`, then `request GET URL`).
    Request(cli::request::RequestArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, e.g. `clawgate man > clawgate.1`.
    Man,
    /// Manage the gateway's TLS certificate.
    Cert {
        #[command(subcommand)]
        action: CertAction,
        /// Config file naming the certificate directory or files.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the commented default configuration.
    Init,
    /// Validate a configuration file (default lookup when omitted).
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct KeysDir {
    /// Keys directory (default: [tokens] keys_dir of the config).
    #[arg(long, global = true)]
    keys_dir: Option<PathBuf>,
    /// Config file (default lookup when omitted).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Clone, Copy)]
enum KeysAction {
    /// Add a key: the signer if there is none, else staged (published, not signing).
    Generate,
    /// Make the newest staged key (or a new one) the signer.
    Rotate,
    /// List keys with their status.
    List,
    /// Remove keys that stopped signing longer ago than the longest token lifetime.
    Prune,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Mint a session token with the current signing key.
    Issue {
        /// Subject (`sub`).
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. "1h" (default: [tokens] session_ttl); at most
        /// [tokens] absolute_timeout.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<std::time::Duration>,
        /// A scope to grant; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Bind the token to this key (a `k4.public` PASERK): each request
        /// then needs a proof signed by it. Required under
        /// [auth] binding = "required".
        #[arg(long)]
        client_key: Option<String>,
    },
    /// Check a token's signature and claims.
    Verify {
        /// The token.
        token: String,
    },
}

fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    clawgate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. \"1h\")"))
}

#[derive(Subcommand)]
enum CertAction {
    /// Issue a new server certificate (creating the local root if missing).
    Generate {
        /// Also replace the local root: every client must trust the new ca.crt.
        #[arg(long)]
        new_root: bool,
    },
    /// Show the server certificate and the local root.
    Show,
    /// Print the SHA-256 fingerprint and SPKI pin of the server certificate.
    Fingerprint,
}

/// A failure with its exit status.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        let error = error.into();
        let usage = error.downcast_ref::<ConfigError>().is_some()
            || error.downcast_ref::<cli::UsageError>().is_some();
        let code = if usage { EX_USAGE } else { 1 };
        Self { code, error }
    }
}

const EX_USAGE: u8 = 64;
/// The context of a failure to make TLS available (`serve` refuses to start).
pub(crate) const TLS_UNAVAILABLE: &str = "TLS is not available; refusing to start";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version print and succeed; every usage error
            // exits 64 (EX_USAGE), like a configuration error.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("clawgate: {}", render(&failure.error));
            ExitCode::from(failure.code)
        }
    }
}

/// The error and its causes on one line, each cause once: an error whose
/// message already shows its source (`…: Address already in use (os error
/// 98)`) does not get it appended a second time.
fn render(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve {
            config,
            upstream,
            listen,
            banner,
        } => {
            let overrides = cli::serve::Overrides { upstream, listen };
            let (config, file) = preflight_with(config.as_deref(), &overrides)?;
            Ok(cli::serve::run(config, file.as_deref(), banner)?)
        }
        Command::Pairing { config } => Ok(cli::serve::new_pairing_code(&load(config.as_deref())?)?),
        Command::Config {
            action: ConfigAction::Init,
        } => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Check { file },
        } => {
            let (_, path) = preflight(file.as_deref())?;
            let shown = path.map_or_else(
                || "built-in defaults".to_owned(),
                |p| p.display().to_string(),
            );
            println!("{shown}: ok");
            Ok(())
        }
        Command::Keys { action, dirs } => {
            let (config, dir) = keys_dir(&dirs)?;
            let name = match action {
                KeysAction::Generate => "generate",
                KeysAction::Rotate => "rotate",
                KeysAction::List => "list",
                KeysAction::Prune => "prune",
            };
            Ok(cli::keys(name, &dir, &config)?)
        }
        Command::Token { action, dirs } => {
            let (config, dir) = keys_dir(&dirs)?;
            match action {
                TokenAction::Issue {
                    sub,
                    ttl,
                    scopes,
                    client_key,
                } => Ok(cli::token_issue(
                    &dir,
                    &config,
                    &sub,
                    ttl,
                    &scopes,
                    client_key.as_deref(),
                )?),
                TokenAction::Verify { token } => Ok(cli::token_verify(&dir, &config, &token)?),
            }
        }
        Command::HashPassword => Ok(cli::hash_password_from_stdin()?),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "clawgate", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            Ok(())
        }
        Command::Request(args) => Ok(cli::request::run(&args)?),
        Command::Cert { action, config } => {
            let config = load(config.as_deref())?;
            Ok(match action {
                CertAction::Generate { new_root } => cli::cert::generate(&config, new_root),
                CertAction::Show => cli::cert::show(&config),
                CertAction::Fingerprint => cli::cert::fingerprint(&config),
            }?)
        }
    }
}

/// Loads the configuration and runs every check `serve` runs before it
/// creates or binds anything: `config check` and `serve` call this one
/// function, so they accept and refuse the same files with the same
/// message and exit status.
fn preflight(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), Failure> {
    preflight_with(path, &cli::serve::Overrides::default())
}

/// [`preflight`] with `serve`'s command-line overrides applied first, so
/// they meet the same rules as the file's values.
fn preflight_with(
    path: Option<&Path>,
    overrides: &cli::serve::Overrides,
) -> Result<(Config, Option<PathBuf>), Failure> {
    let (mut config, file) = Config::load(path)?;
    overrides.apply(&mut config)?;
    match Gateway::preflight(&config, &SystemClock) {
        Ok(()) => Ok((config, file)),
        // A configuration error is the user's to fix (exit 64), not a TLS failure.
        Err(clawgate::Error::Config(error)) => Err(error.into()),
        Err(error) => Err(anyhow::Error::from(error).context(TLS_UNAVAILABLE).into()),
    }
}

fn load(path: Option<&Path>) -> Result<Config, Failure> {
    Ok(Config::load(path)?.0)
}

fn keys_dir(dirs: &KeysDir) -> Result<(Config, PathBuf), Failure> {
    let config = load(dirs.config.as_deref())?;
    let dir = dirs
        .keys_dir
        .clone()
        .unwrap_or_else(|| config.tokens.keys_dir.clone());
    Ok((config, dir))
}
