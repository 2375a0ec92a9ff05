#![no_main]
// The `wal` target: see aether_fuzz::wal.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::wal(data));
