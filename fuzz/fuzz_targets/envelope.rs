#![no_main]
// The `envelope` target: see aether_fuzz::envelope.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::envelope(data));
