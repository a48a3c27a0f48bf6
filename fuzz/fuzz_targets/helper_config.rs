//! Fuzz target `helper_config`: the body is [`felhom_fuzz::helper_config`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::helper_config(data));
