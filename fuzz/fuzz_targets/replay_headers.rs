//! `nonce` LF `timestamp` bytes → ReplayGuard::check_bytes_at (one shared guard).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::replay_headers(data);
});
