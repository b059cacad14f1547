//! Bearer token bytes → session_token::verify_at (real key ring).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::token_parse(data);
});
