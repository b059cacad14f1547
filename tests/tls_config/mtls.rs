//! Optional mutual TLS: real handshakes against clawgate's ServerConfig with
//! the verifier `client_auth::client_verifier` builds from `[tls]`, and real
//! rustls clients holding rcgen client certificates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common::tls_echo;

use std::path::PathBuf;
use std::sync::Arc;

use clawgate::clock::SystemClock;
use clawgate::config::{ClientAuth, TlsConfig};
use clawgate::gateway::certificate_manager::CertificateManager;
use clawgate::gateway::tls_config::client_auth::client_verifier;
use tempfile::TempDir;
use tls_echo::{
    ClientCa, ClientIdentity, EchoServer, client, exchange, self_signed_client,
    self_signed_client_until,
};

/// A gateway-side TLS server with the mutual-TLS policy of `tweak`.
struct Fixture {
    dir: TempDir,
    server: EchoServer,
    _manager: CertificateManager,
}

impl Fixture {
    async fn start(tweak: impl FnOnce(&mut TlsConfig, &TempDir)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut tls = TlsConfig {
            cert_dir: dir.path().join("certs"),
            ..TlsConfig::default()
        };
        tweak(&mut tls, &dir);
        let manager = CertificateManager::init(&tls, Arc::new(SystemClock)).unwrap();
        let verifier = client_verifier(&tls).unwrap();
        let server = EchoServer::start(&manager, verifier).await;
        Self {
            dir,
            server,
            _manager: manager,
        }
    }

    fn server_ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    /// One ping/pong as `identity`; Ok when the server admitted the client.
    async fn exchange_as(&self, identity: Option<&ClientIdentity>) -> std::io::Result<()> {
        exchange(&client(&self.server_ca(), identity), self.server.addr).await
    }
}

/// Writes `ca` as the trusted client CA bundle and returns its path.
fn trust(ca: &ClientCa, dir: &TempDir) -> PathBuf {
    let path = dir.path().join("client-ca.pem");
    ca.write_pem(&path);
    path
}

/// The pinned form operators copy from `openssl x509 -fingerprint -sha256`.
fn openssl_form(hex: &str) -> String {
    hex.to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test]
async fn required_ca_admits_a_client_certificate_from_that_ca() {
    let ca = ClientCa::new("clients");
    let fx = Fixture::start(|t, dir| {
        t.client_auth = ClientAuth::Required;
        t.client_ca_path = Some(trust(&ca, dir));
    })
    .await;
    let alice = ca.issue("alice");
    fx.exchange_as(Some(&alice)).await.expect("admitted");
    assert_eq!(fx.server.last_seen(1).await, Ok(Some(alice.fingerprint())));
}

#[tokio::test]
async fn required_ca_refuses_a_client_without_a_certificate() {
    let ca = ClientCa::new("clients");
    let fx = Fixture::start(|t, dir| {
        t.client_auth = ClientAuth::Required;
        t.client_ca_path = Some(trust(&ca, dir));
    })
    .await;
    assert!(fx.exchange_as(None).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_missing"));
}

#[tokio::test]
async fn required_ca_refuses_a_certificate_from_another_ca() {
    let (ca, other) = (ClientCa::new("clients"), ClientCa::new("elsewhere"));
    let fx = Fixture::start(|t, dir| {
        t.client_auth = ClientAuth::Required;
        t.client_ca_path = Some(trust(&ca, dir));
    })
    .await;
    assert!(fx.exchange_as(Some(&other.issue("mallory"))).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_rejected"));
}

#[tokio::test]
async fn pinned_self_signed_client_is_admitted_and_seen_by_its_fingerprint() {
    let pinned = self_signed_client("device-1");
    let pin = openssl_form(&pinned.fingerprint());
    let fx = Fixture::start(|t, _| {
        t.client_auth = ClientAuth::Required;
        t.client_cert_fingerprints = vec![pin.clone()];
    })
    .await;
    fx.exchange_as(Some(&pinned)).await.expect("admitted");
    // What the server sees (peer_certificates → SHA-256) equals the pin,
    // normalized: the value the gateway forwards upstream.
    let seen = fx.server.last_seen(1).await.unwrap().unwrap();
    assert_eq!(seen, pin.replace(':', "").to_lowercase());
}

#[tokio::test]
async fn unpinned_self_signed_client_is_refused() {
    let pinned = self_signed_client("device-1");
    let stranger = self_signed_client("device-1");
    let fx = Fixture::start(|t, _| {
        t.client_auth = ClientAuth::Required;
        t.client_cert_fingerprints = vec![pinned.fingerprint()];
    })
    .await;
    assert!(fx.exchange_as(Some(&stranger)).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_rejected"));
}

#[tokio::test]
async fn pinned_certificate_without_its_private_key_is_refused() {
    // The pin names a public certificate; presenting it with another key
    // must fail the CertificateVerify signature check.
    let pinned = self_signed_client("device-1");
    let impostor = ClientIdentity {
        chain: pinned.chain.clone(),
        key: self_signed_client("other").key,
    };
    let fx = Fixture::start(|t, _| {
        t.client_auth = ClientAuth::Required;
        t.client_cert_fingerprints = vec![pinned.fingerprint()];
    })
    .await;
    assert!(fx.exchange_as(Some(&impostor)).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_rejected"));
}

#[tokio::test]
async fn expired_pinned_certificate_is_refused() {
    let expired = self_signed_client_until(
        "old",
        time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let fx = Fixture::start(|t, _| {
        t.client_auth = ClientAuth::Required;
        t.client_cert_fingerprints = vec![expired.fingerprint()];
    })
    .await;
    assert!(fx.exchange_as(Some(&expired)).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_rejected"));
}

#[tokio::test]
async fn pinned_certificate_is_refused_before_its_validity_starts() {
    // Valid from tomorrow (validity ends in three days, lasts two).
    let early = self_signed_client_until(
        "early",
        time::OffsetDateTime::now_utc() + time::Duration::days(3),
    );
    let fx = Fixture::start(|t, _| {
        t.client_auth = ClientAuth::Required;
        t.client_cert_fingerprints = vec![early.fingerprint()];
    })
    .await;
    assert!(fx.exchange_as(Some(&early)).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_rejected"));
}

#[tokio::test]
async fn optional_admits_a_client_without_a_certificate() {
    let ca = ClientCa::new("clients");
    let fx = Fixture::start(|t, dir| {
        t.client_auth = ClientAuth::Optional;
        t.client_ca_path = Some(trust(&ca, dir));
    })
    .await;
    fx.exchange_as(None).await.expect("anonymous admitted");
    assert_eq!(fx.server.last_seen(1).await, Ok(None));
}

#[tokio::test]
async fn optional_still_refuses_a_bad_certificate() {
    let (ca, other) = (ClientCa::new("clients"), ClientCa::new("elsewhere"));
    let fx = Fixture::start(|t, dir| {
        t.client_auth = ClientAuth::Optional;
        t.client_ca_path = Some(trust(&ca, dir));
    })
    .await;
    assert!(fx.exchange_as(Some(&other.issue("mallory"))).await.is_err());
    assert_eq!(fx.server.last_seen(1).await, Err("client_cert_rejected"));
    fx.exchange_as(Some(&ca.issue("alice")))
        .await
        .expect("good cert admitted");
}

#[tokio::test]
async fn optional_pins_refuse_an_unpinned_certificate_but_admit_none() {
    let pinned = self_signed_client("device-1");
    let fx = Fixture::start(|t, _| {
        t.client_auth = ClientAuth::Optional;
        t.client_cert_fingerprints = vec![pinned.fingerprint()];
    })
    .await;
    assert!(
        fx.exchange_as(Some(&self_signed_client("x")))
            .await
            .is_err()
    );
    fx.exchange_as(None).await.expect("anonymous admitted");
    fx.exchange_as(Some(&pinned))
        .await
        .expect("pinned admitted");
}

#[tokio::test]
async fn ca_and_pins_together_require_both() {
    let ca = ClientCa::new("clients");
    let (alice, bob) = (ca.issue("alice"), ca.issue("bob"));
    let self_signed = self_signed_client("alice");
    let fx = Fixture::start(|t, dir| {
        t.client_auth = ClientAuth::Required;
        t.client_ca_path = Some(trust(&ca, dir));
        t.client_cert_fingerprints = vec![alice.fingerprint(), self_signed.fingerprint()];
    })
    .await;
    fx.exchange_as(Some(&alice))
        .await
        .expect("CA-signed and pinned");
    assert!(
        fx.exchange_as(Some(&bob)).await.is_err(),
        "CA-signed but not pinned"
    );
    assert!(
        fx.exchange_as(Some(&self_signed)).await.is_err(),
        "pinned but not from the CA"
    );
    let seen = fx.server.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| s.is_ok()).count(),
        1,
        "only alice admitted: {seen:?}"
    );
}

#[tokio::test]
async fn client_auth_off_never_asks_for_a_certificate() {
    let fx = Fixture::start(|t, _| t.client_auth = ClientAuth::Off).await;
    // A client holding a certificate is not asked for it.
    fx.exchange_as(Some(&self_signed_client("x")))
        .await
        .unwrap();
    assert_eq!(fx.server.last_seen(1).await, Ok(None));
}
