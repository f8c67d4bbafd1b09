#![no_main]
//! `cargo fuzz run append_request`: see roaming_reliability::fuzz_targets::append_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roaming_reliability::fuzz_targets::append_request(data);
});
