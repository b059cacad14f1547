//! `clawgate cert generate|show|fingerprint`.

use std::time::SystemTime;

use anyhow::Context as _;
use clawgate::Config;
use clawgate::clock::rfc3339;
use clawgate::gateway::certificate_manager::{self as certs, CertInfo};

/// `cert generate`: a new server certificate (and a new root when asked).
pub(crate) fn generate(config: &Config, new_root: bool) -> anyhow::Result<()> {
    let (leaf, root) = certs::generate_into(&config.tls, new_root, SystemTime::now())?;
    print_cert("server", &leaf);
    print_cert("root", &root);
    if new_root {
        println!("new local root: every client must trust the new ca.crt");
    }
    Ok(())
}

/// `cert show`: the served certificate and the local root.
pub(crate) fn show(config: &Config) -> anyhow::Result<()> {
    for (label, info) in certs::describe(&config.tls)? {
        print_cert(label, &info);
    }
    Ok(())
}

/// `cert fingerprint`: what a client pins.
pub(crate) fn fingerprint(config: &Config) -> anyhow::Result<()> {
    let described = certs::describe(&config.tls)?;
    let (_, served) = described.first().context("no certificate")?;
    println!("sha256 fingerprint: {}", served.fingerprint_sha256);
    println!("spki pin: {}", served.spki_pin);
    Ok(())
}

fn print_cert(label: &str, info: &CertInfo) {
    println!("{label}:");
    println!("  subject: {}", info.subject);
    println!("  issuer: {}", info.issuer);
    if !info.sans.is_empty() {
        println!("  names: {}", info.sans.join(", "));
    }
    println!(
        "  valid: {} to {}",
        rfc3339(info.not_before),
        rfc3339(info.not_after)
    );
    println!("  sha256 fingerprint: {}", info.fingerprint_sha256);
    println!("  spki pin: {}", info.spki_pin);
}
