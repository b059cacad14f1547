//! Mutual TLS through the real gateway: a pinned client certificate is
//! admitted and its fingerprint reaches the upstream as an identity header;
//! a client without one never gets an HTTP answer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;
use crate::common::tls_echo;

use std::sync::Arc;

use clawgate::config::ClientAuth;
use common::{TestClient, authed, gateway_with_upstream};

#[tokio::test]
async fn pinned_client_certificate_is_admitted_and_forwarded_upstream() {
    let identity = tls_echo::self_signed_client("agent-1");
    let fingerprint = identity.fingerprint();
    let pin = fingerprint.clone();
    let (gw, _, _) = gateway_with_upstream(move |c, _| {
        c.tls.client_auth = ClientAuth::Required;
        c.tls.client_cert_fingerprints = vec![pin];
    })
    .await;
    let token = gw.token("alice", &[]);

    let mut with_cert = (*tls_echo::client(&gw.ca_path(), Some(&identity))).clone();
    with_cert.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = TestClient {
        config: Arc::new(with_cert),
    };
    let resp = client
        .send(gw.addr(), authed("GET", "/who", &token, ""))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let echo = resp.json();
    assert_eq!(
        echo["headers"]["x-clawgate-client-cert-sha256"][0],
        fingerprint.as_str()
    );

    // No certificate: the handshake is refused (TLS 1.3 reports it on first use).
    let without = gw.client();
    let refused = match without.connect(gw.addr()).await {
        Err(_) => true,
        Ok(tls) => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::get("/health")
                .header("host", "localhost")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.send_request(req).await.is_err()
        }
    };
    assert!(refused, "a client without a certificate got an HTTP answer");
    let metrics = gw.metrics_with("result=\"client_cert_missing\"").await;
    assert!(
        metrics.contains("result=\"client_cert_missing\""),
        "{metrics}"
    );
}
