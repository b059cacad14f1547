//! The floor of clawgate's stack: a TLS 1.3 reverse proxy with nothing but
//! tokio-rustls (ring, TLS 1.3 only, the gateway's two suites), hyper's
//! HTTP/1.1 server and hyper-util's legacy client, as clawgate uses them.
//! No authentication, no headers added, no metrics, no deadlines. It is not
//! a product: it measures what this stack costs before clawgate adds
//! anything (`BARE=1 bash benches/vs-nginx.sh`, `ONLY=bare bash
//! benches/callgrind.sh`; docs/performance.md).
//!
//!     cargo run --release --example bare_proxy -- PORT CERT_PEM KEY_PEM UPSTREAM_PORT
//!
//! Listens on 127.0.0.1:PORT and forwards to http://127.0.0.1:UPSTREAM_PORT.
//! With `BARE_RUNTIME=per-core` it runs one single-threaded runtime per
//! core instead of Tokio's work-stealing one, each with its own
//! `SO_REUSEPORT` listener and upstream pool (nginx's model): what the
//! runtime's cross-thread wake-ups cost.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::ring as provider;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Upstream = Client<HttpConnector, Incoming>;

fn main() -> anyhow::Result<()> {
    let setup = Setup::from_args()?;
    if std::env::var("BARE_RUNTIME").as_deref() != Ok("per-core") {
        return tokio::runtime::Runtime::new()?.block_on(serve(setup, false));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let setup = setup.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(serve(setup, true))
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a runtime thread panicked"))??;
    }
    Ok(())
}

#[derive(Clone)]
struct Setup {
    port: u16,
    acceptor: TlsAcceptor,
    authority: http::uri::Authority,
}

impl Setup {
    fn from_args() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let [port, cert, key, upstream_port] = args.as_slice() else {
            bail!("usage: bare_proxy PORT CERT_PEM KEY_PEM UPSTREAM_PORT");
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .context("certificate file")?
            .collect::<Result<Vec<_>, _>>()
            .context("certificate PEM")?;
        let key = PrivateKeyDer::from_pem_file(key).context("key file")?;
        // The gateway's suites: TLS 1.3 only, AES-256-GCM and ChaCha20-Poly1305.
        let suites = vec![
            provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
            provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        let crypto = rustls::crypto::CryptoProvider {
            cipher_suites: suites,
            ..provider::default_provider()
        };
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(crypto))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            port: port.parse()?,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            authority: format!("127.0.0.1:{upstream_port}").parse()?,
        })
    }
}

async fn serve(setup: Setup, reuse_port: bool) -> anyhow::Result<()> {
    let Setup {
        port,
        acceptor,
        authority,
    } = setup;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(reuse_port)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    let listener: TcpListener = socket.listen(1024)?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| forward(client.clone(), authority.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn forward(
    client: Upstream,
    authority: http::uri::Authority,
    req: Request<Incoming>,
) -> Result<Response<Either<Incoming, Empty<Bytes>>>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .unwrap_or_default();
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => {
            let mut response = Response::new(Either::Right(Empty::new()));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            Ok(response)
        }
    }
}
