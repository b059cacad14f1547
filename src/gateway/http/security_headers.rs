//! Security headers on every response the gateway sends over TLS.
//!
//! This layer is outermost (PITFALLS H1), so 401/404/405/413/5xx, timeouts
//! and caught panics all carry HSTS. An upstream's own
//! `Strict-Transport-Security` is replaced, never duplicated, because user
//! agents honour only the first one (RFC 6797 §8.1; PITFALLS H2).
//!
//! Not covered, because no HTTP response exists or the service is never
//! called: TLS failures (only an alert is sent) and the few malformed
//! requests hyper answers itself (HTTP/1.1 400 for an unparseable request
//! line, 431 when the head exceeds `max_header_bytes`). Those responses are
//! bare and the connection is closed; see docs/tls-session-security.md.

use axum::response::Response;
use http::header::{self, HeaderName, HeaderValue};

use crate::config::HstsConfig;

/// Marks a response that came from the upstream: the gateway then only
/// fills in missing headers instead of imposing its own page policy.
#[derive(Debug, Clone, Copy)]
pub struct FromUpstream;

/// The rendered header values.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    hsts: HeaderValue,
}

impl SecurityHeaders {
    /// Renders the HSTS value from the config.
    pub fn new(config: &HstsConfig) -> Self {
        Self {
            hsts: hsts_value(config),
        }
    }

    /// The `Strict-Transport-Security` value served.
    pub fn hsts(&self) -> &HeaderValue {
        &self.hsts
    }

    /// Sets the headers on `response`.
    pub fn apply(&self, response: &mut Response) {
        let from_upstream = response.extensions().get::<FromUpstream>().is_some();
        let headers = response.headers_mut();
        // Replace, not append: the first HSTS header is the one honoured.
        headers.insert(header::STRICT_TRANSPORT_SECURITY, self.hsts.clone());
        for (name, value) in FILL_IN {
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        if !from_upstream {
            // The gateway's own responses are JSON: forbid rendering them as a page.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            );
        }
    }
}

/// Headers set when the response does not already have them.
const FILL_IN: [(HeaderName, &str); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// `max-age=N[; includeSubDomains][; preload]` (RFC 6797 §6.1).
pub fn hsts_value(config: &HstsConfig) -> HeaderValue {
    let mut value = format!("max-age={}", config.max_age);
    if config.include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if config.preload {
        value.push_str("; preload");
    }
    // Only digits, letters, '=', ';' and spaces: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("max-age=31536000"))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn hsts_default_has_no_preload() {
        let v = hsts_value(&HstsConfig::default());
        assert_eq!(v, "max-age=31536000; includeSubDomains");
    }

    #[test]
    fn hsts_max_age_zero_and_preload_render() {
        let v = hsts_value(&HstsConfig {
            max_age: 0,
            include_subdomains: false,
            preload: false,
        });
        assert_eq!(v, "max-age=0");
        let v = hsts_value(&HstsConfig {
            max_age: 63_072_000,
            include_subdomains: true,
            preload: true,
        });
        assert_eq!(v, "max-age=63072000; includeSubDomains; preload");
    }

    #[test]
    fn upstream_hsts_is_replaced_not_duplicated() {
        let sh = SecurityHeaders::new(&HstsConfig::default());
        let mut resp = Response::new(Body::empty());
        resp.headers_mut().append(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=5"),
        );
        resp.headers_mut().insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
        resp.extensions_mut().insert(FromUpstream);
        sh.apply(&mut resp);
        let all: Vec<_> = resp
            .headers()
            .get_all(header::STRICT_TRANSPORT_SECURITY)
            .iter()
            .collect();
        assert_eq!(all, ["max-age=31536000; includeSubDomains"]);
        assert_eq!(resp.headers()[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert!(!resp.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
