//! `[upstream] public_paths`: which paths are forwarded without a token.

/// The configured public paths.
pub(super) struct PublicPaths(Vec<PublicPath>);

enum PublicPath {
    Exact(String),
    /// Keeps the trailing `/`.
    Prefix(String),
}

impl PublicPaths {
    /// Entries ending in `/*` are prefixes (keeping the `/`); others are exact.
    pub(super) fn new(entries: &[String]) -> Self {
        let parse = |entry: &String| match entry.strip_suffix('*').filter(|p| p.ends_with('/')) {
            Some(prefix) => PublicPath::Prefix(prefix.to_owned()),
            None => PublicPath::Exact(entry.clone()),
        };
        Self(entries.iter().map(parse).collect())
    }

    /// Whether `path` is public.
    pub(super) fn matches(&self, path: &str) -> bool {
        // Fail closed: the upstream may normalise `/pub/../admin` to `/admin`.
        is_plain_path(path)
            && self.0.iter().any(|p| match p {
                PublicPath::Exact(exact) => path == exact,
                PublicPath::Prefix(prefix) => path.starts_with(prefix.as_str()),
            })
    }
}

/// No dot segments (also with `;` parameters), no backslash, no encoded
/// `.`, `/`, `\` or NUL.
fn is_plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.starts_with('/')
        && !path.contains('\\')
        && !["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        && path
            .split('/')
            .map(|seg| seg.split(';').next().unwrap_or(seg))
            .all(|seg| seg != "." && seg != "..")
}
