#![no_main]
// The `protocol_request` target: see aether_fuzz::protocol_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::protocol_request(data));
