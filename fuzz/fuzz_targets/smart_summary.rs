//! Fuzz target `smart_summary`: the body is [`felhom_fuzz::smart_summary`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::smart_summary(data));
