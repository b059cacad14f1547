//! Certificate loading, generation and swap; a full TLS 1.3 handshake in
//! memory (no sockets), server + client CPU cost together.
//!
//! Run: `cargo bench --bench tls`
#![allow(clippy::unwrap_used, missing_docs)] // bench setup: a panic is a failed run

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clawgate::clock::SystemClock;
use clawgate::config::{KeyAlgorithm, TlsConfig};
use clawgate::gateway::certificate_manager::{
    CertificateManager, generate_root, issue_server_cert, load_files,
};
use clawgate::gateway::tls_config;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

const DAY: Duration = Duration::from_secs(86_400);

fn certificates(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        cert_dir: dir.path().join("certs"),
        ..TlsConfig::default()
    };
    let manager = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    let (crt, key) = (
        config.cert_dir.join("gateway.crt"),
        config.cert_dir.join("gateway.key"),
    );
    let now = SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 3650 * DAY, now).unwrap();

    let mut group = c.benchmark_group("certificates");
    group.throughput(Throughput::Elements(1));
    group.bench_function("load_and_check_pem_files", |b| {
        b.iter(|| black_box(load_files(&crt, &key, now).unwrap()))
    });
    group.bench_function("generate_p256_leaf", |b| {
        b.iter(|| {
            black_box(
                issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, 90 * DAY, now).unwrap(),
            )
        })
    });
    let loaded = load_files(&crt, &key, now).unwrap();
    group.bench_function("swap_into_resolver", |b| {
        b.iter(|| manager.swap(black_box(&loaded)))
    });
    group.bench_function("rotate_generate_write_load_swap", |b| {
        b.iter(|| {
            let (leaf, _) =
                clawgate::gateway::certificate_manager::generate_into(&config, false, now).unwrap();
            let loaded = load_files(&crt, &key, now).unwrap();
            manager.swap(&loaded);
            black_box(leaf)
        })
    });
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        cert_dir: dir.path().join("certs"),
        ..TlsConfig::default()
    };
    let manager = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    let server_config = Arc::new(tls_config::server_config(manager.resolver(), None).unwrap());
    let mut roots = RootCertStore::empty();
    let ca = std::fs::read(config.cert_dir.join("ca.crt")).unwrap();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client_config = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut group = c.benchmark_group("tls13_handshake_in_memory");
    group.throughput(Throughput::Elements(1));
    group.bench_function("full_handshake_p256_x25519", |b| {
        b.iter(|| {
            let name = ServerName::try_from("localhost").unwrap();
            let mut client = ClientConnection::new(Arc::clone(&client_config), name).unwrap();
            let mut server = ServerConnection::new(Arc::clone(&server_config)).unwrap();
            while client.is_handshaking() || server.is_handshaking() {
                transfer(&mut client, &mut server);
                server.process_new_packets().unwrap();
                transfer(&mut server, &mut client);
                client.process_new_packets().unwrap();
            }
            black_box(client.negotiated_cipher_suite())
        })
    });
    group.finish();
}

fn transfer(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
) {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut slice = buf.as_slice();
    while !slice.is_empty() {
        to.read_tls(&mut slice).unwrap();
    }
}

criterion_group!(benches, certificates, handshake);
criterion_main!(benches);
