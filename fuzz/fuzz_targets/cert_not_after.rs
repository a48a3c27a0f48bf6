//! Fuzz target `cert_not_after`: the body is [`felhom_fuzz::cert_not_after`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::cert_not_after(data));
