//! Header block → bearer / WebSocket-subprotocol token extraction, then the rewrite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = clawgate::fuzzing::bearer_token(data);
});
