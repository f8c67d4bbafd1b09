#![no_main]
//! `cargo fuzz run history_cursor`: see roaming_reliability::fuzz_targets::history_cursor.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roaming_reliability::fuzz_targets::history_cursor(data);
});
