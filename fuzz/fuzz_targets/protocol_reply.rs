#![no_main]
// The `protocol_reply` target: see aether_fuzz::protocol_reply.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::protocol_reply(data));
