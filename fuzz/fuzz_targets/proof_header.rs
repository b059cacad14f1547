//! Clawgate-Proof header bytes → proof_header → ProofChecker::check_at.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::proof_header(data);
});
