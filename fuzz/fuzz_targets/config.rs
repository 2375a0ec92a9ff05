#![no_main]
// The `config` target: see aether_fuzz::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::config(data));
