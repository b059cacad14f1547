//! The one check that every metric a gateway exposes, and every label
//! value it uses, is documented in docs/operations.md (standalone and
//! cluster tests alike).

/// The metric names (histograms by their base name) and label values in
/// the exposition `text` whose name starts with `prefix` and that
/// docs/operations.md does not mention in backticks. Bucket bounds (`le`)
/// and the version label are not label values to document.
pub fn undocumented(text: &str, prefix: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let mut missing = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(prefix)) {
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| text.contains(&format!("# TYPE {b} histogram")))
            .unwrap_or(name);
        if !doc.contains(&format!("`{base}`")) {
            missing.push(base.to_owned());
        }
        if let Some(labels) = line[name_end..].strip_prefix('{') {
            let labels = &labels[..labels.find('}').unwrap()];
            for pair in labels.split(',') {
                let (key, value) = pair.split_once('=').unwrap();
                let value = value.trim_matches('"');
                if key != "le" && key != "version" && !doc.contains(&format!("`{value}`")) {
                    missing.push(format!("{base}{{{key}={value}}}"));
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

/// Fails with the list of what [`undocumented`] finds.
pub fn assert_documented(text: &str, prefix: &str) {
    let missing = undocumented(text, prefix);
    assert!(
        missing.is_empty(),
        "undocumented in docs/operations.md: {missing:?}"
    );
}
