//! Key file bytes → keyring::parse_key_file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::paserk_file(data);
});
