//! The request's Host and target, checked before routing, so neither the
//! auth layer nor the proxy ever sees an ambiguous authority or a target
//! that cannot be written into an HTTP/1.1 request line:
//!
//! - RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`; no request
//!   has two; a `Host` value is `host[:port]` (or empty);
//! - RFC 9113 §8.3.1: over HTTP/2, a `Host` field must agree with
//!   `:authority` (`:authority` wins, so a disagreement is refused rather
//!   than resolved one way here and another way upstream);
//! - the path and query are visible ASCII: a raw byte above 0x7E (HTTP/2
//!   `:path` carries any UTF-8) would reach the upstream's request line
//!   unencoded, where parsers disagree about it.
//!
//! Every refusal is a 400 `invalid_request`; the reason goes to the debug
//! log (without the values).

use http::uri::Authority;
use http::{HeaderMap, Uri, Version, header};

/// Why a request's Host or target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RequestTargetError {
    /// An HTTP/1.1 request without a `Host` field (RFC 9112 §3.2).
    #[error("the request has no Host field")]
    MissingHost,
    /// More than one `Host` field line (RFC 9112 §3.2).
    #[error("the request has more than one Host field")]
    DuplicateHost,
    /// A `Host` value that is not `host[:port]`.
    #[error("the Host field is not a valid authority")]
    InvalidHost,
    /// HTTP/2 `Host` and `:authority` name different authorities (RFC 9113 §8.3.1).
    #[error("Host and :authority disagree")]
    AuthorityMismatch,
    /// A byte outside visible ASCII in the path or query.
    #[error("the request target holds a byte outside visible ASCII")]
    NonAsciiTarget,
}

impl RequestTargetError {
    /// Stable reason code for logs.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::MissingHost => "missing_host",
            Self::DuplicateHost => "duplicate_host",
            Self::InvalidHost => "invalid_host",
            Self::AuthorityMismatch => "authority_mismatch",
            Self::NonAsciiTarget => "non_ascii_target",
        }
    }
}

/// The request-target and `Host` rules on a request's parts (applied by
/// [`TargetCheckLayer`](super::edge::TargetCheckLayer)).
pub(crate) fn check(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), RequestTargetError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestTargetError::DuplicateHost);
    }
    match host {
        // HTTP/1.0 has no Host requirement; HTTP/2 may carry :authority only.
        None if version == Version::HTTP_11 => return Err(RequestTargetError::MissingHost),
        None => {}
        Some(value) => {
            let bytes = value.as_bytes();
            // Empty is allowed: a target with no authority (RFC 9112 §3.2).
            let valid =
                bytes.is_empty() || (!bytes.contains(&b'@') && Authority::try_from(bytes).is_ok());
            if !valid {
                return Err(RequestTargetError::InvalidHost);
            }
            let disagrees = uri
                .authority()
                .is_some_and(|a| !a.as_str().as_bytes().eq_ignore_ascii_case(bytes));
            // HTTP/1.1 absolute form: Host is ignored (RFC 9112 §3.2.2), so
            // only HTTP/2 (and later) must agree.
            if version >= Version::HTTP_2 && disagrees {
                return Err(RequestTargetError::AuthorityMismatch);
            }
        }
    }
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestTargetError::NonAsciiTarget);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

    use http::HeaderValue;

    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for host in hosts {
            map.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        map
    }

    fn run(version: Version, uri: &str, hosts: &[&str]) -> Result<(), RequestTargetError> {
        check(version, &uri.parse().unwrap(), &headers(hosts))
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        use RequestTargetError::*;
        let v = Version::HTTP_11;
        assert_eq!(run(v, "/x", &["localhost:8443"]), Ok(()));
        assert_eq!(run(v, "/x", &["[::1]:8443"]), Ok(()));
        assert_eq!(run(v, "/x", &[""]), Ok(()));
        assert_eq!(run(v, "/x", &[]), Err(MissingHost));
        assert_eq!(run(v, "/x", &["a", "a"]), Err(DuplicateHost));
        assert_eq!(run(v, "/x", &["user@evil"]), Err(InvalidHost));
        assert_eq!(run(v, "/x", &["a b"]), Err(InvalidHost));
        assert_eq!(run(Version::HTTP_10, "/x", &[]), Ok(()));
        // Absolute form: Host is ignored, not compared.
        assert_eq!(run(v, "https://a.test/x", &["b.test"]), Ok(()));
    }

    #[test]
    fn http2_host_must_agree_with_authority() {
        let v = Version::HTTP_2;
        assert_eq!(run(v, "https://a.test/x", &[]), Ok(()));
        assert_eq!(run(v, "https://a.test/x", &["A.Test"]), Ok(()));
        assert_eq!(
            run(v, "https://a.test/x", &["b.test"]),
            Err(RequestTargetError::AuthorityMismatch)
        );
    }

    #[test]
    fn non_ascii_targets_are_refused() {
        let v = Version::HTTP_2;
        assert_eq!(
            run(v, "https://a.test/caf\u{e9}", &[]),
            Err(RequestTargetError::NonAsciiTarget)
        );
        assert_eq!(
            run(v, "https://a.test/x?q=\u{e9}", &[]),
            Err(RequestTargetError::NonAsciiTarget)
        );
        assert_eq!(run(v, "https://a.test/caf%C3%A9", &[]), Ok(()));
    }
}
