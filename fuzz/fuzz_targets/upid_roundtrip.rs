//! Fuzz target `upid_roundtrip`: the body is [`felhom_fuzz::upid_roundtrip`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::upid_roundtrip(data));
