#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wizgy_fuzz::check_range(data));
