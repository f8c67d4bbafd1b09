#![no_main]
//! `cargo fuzz run list_cursor`: see roaming_reliability::fuzz_targets::list_cursor.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roaming_reliability::fuzz_targets::list_cursor(data);
});
