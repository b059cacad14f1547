//! HSTS and security-header injection per response (NFR: < 1 ms).
//!
//! Run: `cargo bench --bench headers`
#![allow(clippy::unwrap_used, missing_docs)] // bench setup: a panic is a failed run

use std::hint::black_box;

use axum::body::Body;
use axum::response::Response;
use clawgate::config::HstsConfig;
use clawgate::gateway::http::security_headers::{FromUpstream, SecurityHeaders};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn headers(c: &mut Criterion) {
    let sh = SecurityHeaders::new(&HstsConfig::default());
    let mut group = c.benchmark_group("security_headers");
    group.throughput(Throughput::Elements(1));
    group.bench_function("apply_to_gateway_response", |b| {
        b.iter(|| {
            let mut resp = Response::new(Body::empty());
            sh.apply(&mut resp);
            black_box(resp)
        })
    });
    group.bench_function("apply_to_upstream_response_replacing_hsts", |b| {
        b.iter(|| {
            let mut resp = Response::new(Body::empty());
            resp.headers_mut()
                .insert("strict-transport-security", "max-age=5".parse().unwrap());
            resp.extensions_mut().insert(FromUpstream);
            sh.apply(&mut resp);
            black_box(resp)
        })
    });
    group.finish();
}

criterion_group!(benches, headers);
criterion_main!(benches);
