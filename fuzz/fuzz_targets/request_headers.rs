//! Flag byte + header block → the proxy's request-header rewrite (owned-header invariant).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::request_headers(data);
});
