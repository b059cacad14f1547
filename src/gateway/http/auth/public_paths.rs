//! `[upstream] public_paths`: which paths pass the bearer layer without a
//! token (an auth rule, so it lives beside the layer that applies it).

use std::borrow::Cow;

/// The paths that need no token: an exact entry, or under an entry ending
/// in `/*` (`/pub/*` matches `/pub/` and `/pub/x`, not `/pub`). Paths with
/// dot segments, a backslash, or encoded `.`, `/`, `\` never match, so they
/// need a token. The default is none.
#[derive(Debug, Clone, Default)]
pub struct PublicPaths(Vec<PublicPath>);

#[derive(Debug, Clone)]
enum PublicPath {
    Exact(String),
    /// Keeps the trailing `/`.
    Prefix(String),
}

impl PublicPaths {
    /// Entries ending in `/*` are prefixes (keeping the `/`); others are exact.
    pub fn new(entries: &[String]) -> Self {
        let parse = |entry: &String| match entry.strip_suffix('*').filter(|p| p.ends_with('/')) {
            Some(prefix) => PublicPath::Prefix(prefix.to_owned()),
            None => PublicPath::Exact(entry.clone()),
        };
        Self(entries.iter().map(parse).collect())
    }

    /// Whether `path` (the URI path, no query) is public.
    pub fn matches(&self, path: &str) -> bool {
        // The cheap comparison first: most requests match no entry (and
        // with none configured, the decoding walk never runs).
        self.0.iter().any(|p| match p {
            PublicPath::Exact(exact) => path == exact,
            PublicPath::Prefix(prefix) => path.starts_with(prefix.as_str()),
        })
        // Fail closed: the upstream may normalise `/pub/../admin` to `/admin`.
            && is_plain_path(path)
    }
}

/// Whether `path`, and every percent-decoding of it, is plain (see
/// [`is_plain_layer`]). An upstream (or a framework in front of it) may
/// decode more than once: `%252e%252e` is `%2e%2e` after one decoding and
/// `..` after two, so each layer is checked until decoding changes
/// nothing. Terminates: a decoding that changes the bytes shortens them.
fn is_plain_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let mut layer = Cow::Borrowed(path.as_bytes());
    loop {
        if !is_plain_layer(&layer) {
            return false;
        }
        match percent_decode(&layer) {
            Some(next) => layer = Cow::Owned(next),
            None => return true,
        }
    }
}

/// No dot segments (also with `;` parameters), no backslash, no encoded
/// `.`, `/`, `\` or NUL, in any letter case.
fn is_plain_layer(path: &[u8]) -> bool {
    let lower = path.to_ascii_lowercase();
    !path.contains(&b'\\')
        && ![b"%2e", b"%2f", b"%5c", b"%00"]
            .iter()
            .any(|e| lower.windows(3).any(|w| w == *e))
        && path
            .split(|&b| b == b'/')
            .map(|seg| seg.split(|&b| b == b';').next().unwrap_or(seg))
            .all(|seg| seg != b"." && seg != b"..")
}

/// One lenient percent-decoding, as common decoders do it (an invalid
/// escape stays as it is); `None` when there is nothing to decode.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let (mut i, mut changed) = (0, false);
    while i < input.len() {
        let escape = input
            .get(i + 1..i + 3)
            .filter(|_| input[i] == b'%')
            .and_then(|pair| Some(hex(pair[0])? * 16 + hex(pair[1])?));
        match escape.and_then(|v| u8::try_from(v).ok()) {
            Some(byte) => {
                out.push(byte);
                (i, changed) = (i + 3, true);
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> PublicPaths {
        PublicPaths::new(&["/public/*".to_owned(), "/status".to_owned()])
    }

    #[test]
    fn multiply_encoded_dot_slash_and_backslash_are_never_public() {
        let paths = public();
        for path in [
            "/public/%252e%252e/api/secret",
            "/public/%252E%252E/api/secret",
            "/public/..%252fapi/secret",
            "/public/..%255capi",
            "/public/%25252e%25252e/api",
            "/public/%%32e%%32e/api",
            "/public/%2%65%2%65/api",
            "/public/a%2500",
        ] {
            assert!(!paths.matches(path), "{path} must need a token");
        }
    }

    #[test]
    fn ordinary_escapes_stay_public() {
        let paths = public();
        for path in [
            "/public/a%20b",
            "/public/100%25",
            "/public/%zz",
            "/public/caf%C3%A9",
            "/status",
        ] {
            assert!(paths.matches(path), "{path} should be public");
        }
    }

    #[test]
    fn percent_decode_is_lenient_and_reports_no_change() {
        assert_eq!(percent_decode(b"/a%2Fb"), Some(b"/a/b".to_vec()));
        assert_eq!(percent_decode(b"/a%zz%"), None);
        assert_eq!(percent_decode(b"%%32e"), Some(b"%2e".to_vec()));
    }
}
