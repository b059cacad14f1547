//! `clawgate request`: a small curl for bound sessions. `login` or `pair`
//! once (the client key and the tokens go to a 0600 state directory), then
//! every request is sent with `Authorization`, a fresh `Clawgate-Proof` and
//! replay headers.
//!
//! ```text
//! clawgate request login https://localhost:8443 --user alice --cacert ca.crt < password
//! clawgate request GET https://localhost:8443/v1/items
//! clawgate request POST https://localhost:8443/v1/items -d '{"name":"x"}' -H 'content-type: application/json'
//! clawgate request refresh
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use clawgate::binding_client::BindingClient;
use clawgate::secret_file::write_secret;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use ring::rand::SecureRandom as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Arguments of `clawgate request`.
#[derive(clap::Args)]
pub(crate) struct RequestArgs {
    /// `login` (password on stdin), `pair` (code on stdin), `refresh`,
    /// `logout`, or an HTTP method such as GET or POST.
    action: String,
    /// The URL: the gateway (login, pair; later ones reuse it) or the
    /// resource to request (`https://localhost:8443/v1/items`).
    url: Option<String>,
    /// PEM root certificate to trust (the gateway's ca.crt); remembered.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; remembered.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`; remembered.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Where the client key and tokens live (default ~/.zeroclaw/client).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// login: the user name.
    #[arg(long)]
    user: Option<String>,
    /// login, pair: also bind the session to the client certificate.
    #[arg(long)]
    bind_certificate: bool,
    /// Request body.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// Extra request header, `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Print the status line and response headers before the body.
    #[arg(long, short = 'i')]
    include: bool,
}

/// What `login`/`pair` leave behind for later requests (0600, beside the
/// key). The tokens are bearer secrets bound to the key next to them.
#[derive(Default, Serialize, Deserialize)]
struct Saved {
    gateway: String,
    cacert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    session_token: Option<String>,
    refresh_token: Option<String>,
}

/// Runs `clawgate request`.
pub(crate) fn run(args: &RequestArgs) -> anyhow::Result<()> {
    let dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => dirs::home_dir()
            .context("no home directory; pass --state-dir")?
            .join(".zeroclaw/client"),
    };
    let client = BindingClient::load_or_generate(&dir.join(KEY_FILE))?;
    let mut saved = load_saved(&dir)?;
    if let Some(cacert) = &args.cacert {
        saved.cacert = Some(absolute(cacert)?);
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        (saved.cert, saved.key) = (Some(absolute(cert)?), Some(absolute(key)?));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match args.action.as_str() {
            "login" | "pair" | "refresh" | "logout" => {
                if let Some(url) = &args.url {
                    saved.gateway = url.trim_end_matches('/').to_owned();
                }
                session_action(args, &client, &mut saved, &dir).await
            }
            method => resource(args, method, &client, &saved).await,
        }
    })
}

/// `login`, `pair`, `refresh`, `logout`: updates the saved tokens.
async fn session_action(
    args: &RequestArgs,
    client: &BindingClient,
    saved: &mut Saved,
    dir: &Path,
) -> anyhow::Result<()> {
    let mut binding = json!({ "client_key": client.key().public_paserk() });
    if args.bind_certificate {
        binding["bind"] = json!("certificate");
    }
    let (path, body, headers, token) = match args.action.as_str() {
        "login" => {
            let user = args.user.as_deref().context("login needs --user")?;
            binding["username"] = json!(user);
            binding["password"] = json!(stdin_line("password")?);
            ("/auth/login", binding, vec![], None)
        }
        "pair" => {
            let code = ("x-pairing-code", stdin_line("pairing code")?);
            ("/auth/pair", binding, vec![code], None)
        }
        "refresh" => {
            let token = saved
                .refresh_token
                .clone()
                .context("no refresh token saved")?;
            (
                "/auth/refresh",
                json!({ "refresh_token": token }),
                vec![],
                Some(token),
            )
        }
        _ => {
            let token = saved.session_token.clone().context("not logged in")?;
            ("/auth/logout", json!({}), vec![], Some(token))
        }
    };
    let url: Uri = format!("{}{path}", saved.gateway)
        .parse()
        .context("bad gateway URL")?;
    let mut req = build(&Method::POST, &url, Bytes::from(body.to_string()))?;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        req.headers_mut()
            .insert(name, HeaderValue::try_from(value)?);
    }
    if let Some(token) = &token {
        client.attach(&mut req, token)?;
    }
    let (status, _, body) = send(saved, &url, req).await?;
    let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        bail!("{} failed: HTTP {status} ({})", args.action, reply["error"]);
    }
    store_reply(&args.action, &reply, saved);
    save(dir, saved)
}

/// Keeps the tokens of a token response (or forgets them at logout) and
/// says what was granted; never prints a token.
fn store_reply(action: &str, reply: &Value, saved: &mut Saved) {
    if action == "logout" {
        (saved.session_token, saved.refresh_token) = (None, None);
        println!("logged out");
    } else {
        saved.session_token = reply["session_token"].as_str().map(str::to_owned);
        saved.refresh_token = reply["refresh_token"].as_str().map(str::to_owned);
        match reply["cnf"].as_object() {
            Some(cnf) => println!("session bound to {}", Value::Object(cnf.clone())),
            None => {
                eprintln!("warning: the gateway did not bind the session ([auth] binding = off)")
            }
        }
        println!("expires at {}", reply["expires_at"]);
    }
}

/// `METHOD URL`: one bound, signed request; the body goes to stdout.
async fn resource(
    args: &RequestArgs,
    method: &str,
    client: &BindingClient,
    saved: &Saved,
) -> anyhow::Result<()> {
    let method = Method::from_bytes(method.as_bytes())
        .ok()
        .filter(|m| m.as_str().bytes().all(|b| !b.is_ascii_lowercase()))
        .with_context(|| {
            format!("{method:?} is neither login|pair|refresh|logout nor an HTTP method")
        })?;
    let url: Uri = args
        .url
        .as_deref()
        .context("a URL is required")?
        .parse()
        .context("bad URL")?;
    let body = Bytes::from(args.data.clone().unwrap_or_default());
    let mut req = build(&method, &url, body)?;
    for line in &args.headers {
        let (name, value) = line.split_once(':').context("a header is `Name: value`")?;
        req.headers_mut().append(
            HeaderName::try_from(name.trim())?,
            HeaderValue::try_from(value.trim())?,
        );
    }
    let token = saved
        .session_token
        .as_deref()
        .context("not logged in: run `clawgate request login` first")?;
    client.attach(&mut req, token)?;
    // A bound session's proof replaces these; an unbound one needs them on
    // unsafe methods. Sending both always is harmless.
    let (nonce, timestamp) = replay_headers()?;
    req.headers_mut().insert("x-request-nonce", nonce);
    req.headers_mut().insert("x-request-timestamp", timestamp);
    let (status, headers, body) = send(saved, &url, req).await?;
    if args.include {
        println!("HTTP {status}");
        for (name, value) in &headers {
            println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
        println!();
    }
    print!("{}", String::from_utf8_lossy(&body));
    if status >= 400 {
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .map(|v| v["error"].clone());
        bail!("HTTP {status} ({})", code.unwrap_or(Value::Null));
    }
    Ok(())
}

fn build(method: &Method, url: &Uri, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
    if url.scheme_str() != Some("https") {
        bail!("{url}: only https:// URLs");
    }
    let authority = url.authority().context("the URL has no host")?;
    let target = url.path_and_query().map_or("/", |p| p.as_str());
    Ok(Request::builder()
        .method(method.clone())
        .uri(target)
        .header(header::HOST, authority.as_str())
        .body(Full::new(body))?)
}

/// One request on a fresh TLS 1.3 connection (HTTP/1.1).
async fn send(
    saved: &Saved,
    url: &Uri,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(u16, http::HeaderMap, Bytes)> {
    let host = url.host().context("the URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_u16().unwrap_or(443);
    let tls = Arc::new(tls_config(saved)?);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let name = ServerName::try_from(host).context("bad host name")?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

fn tls_config(saved: &Saved) -> anyhow::Result<rustls::ClientConfig> {
    let cacert = saved
        .cacert
        .as_deref()
        .context("no root to trust: pass --cacert (the gateway's ca.crt)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cacert)
        .with_context(|| format!("reading {}", cacert.display()))?
    {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots);
    let mut config = match (&saved.cert, &saved.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn replay_headers() -> anyhow::Result<(HeaderValue, HeaderValue)> {
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce);
    Ok((
        HeaderValue::try_from(nonce)?,
        HeaderValue::from(now.as_secs()),
    ))
}

fn stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("empty {what} on stdin");
    }
    Ok(line)
}

fn load_saved(dir: &Path) -> anyhow::Result<Saved> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(Saved::default());
    }
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{}: not a state file", path.display()))
}

fn save(dir: &Path, saved: &Saved) -> anyhow::Result<()> {
    let path = dir.join(STATE_FILE);
    write_secret(&path, &serde_json::to_vec_pretty(saved)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}", path.display()))
}

/// The client key (PASERK `k4.secret`, 0600).
const KEY_FILE: &str = "client.key";
/// The gateway, trust settings and tokens (JSON, 0600).
const STATE_FILE: &str = "session.json";
