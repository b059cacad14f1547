//! Config file bytes → Config::from_toml.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::config_file(data);
});
