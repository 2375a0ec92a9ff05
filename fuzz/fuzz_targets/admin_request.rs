#![no_main]
// The `admin_request` target: see aether_fuzz::admin_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| aether_fuzz::admin_request(data));
