#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wizgy_fuzz::check_static_path(data));
