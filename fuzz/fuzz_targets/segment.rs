#![no_main]
// The `segment` target: see aether_fuzz::segment.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::segment(data));
