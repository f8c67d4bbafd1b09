#![no_main]
//! `cargo fuzz run list_request`: see roaming_reliability::fuzz_targets::list_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roaming_reliability::fuzz_targets::list_request(data);
});
