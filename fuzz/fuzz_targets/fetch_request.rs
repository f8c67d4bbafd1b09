#![no_main]
//! `cargo fuzz run fetch_request`: see roaming_reliability::fuzz_targets::fetch_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roaming_reliability::fuzz_targets::fetch_request(data);
});
