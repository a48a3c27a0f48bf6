//! Fuzz target `pve_error_text`: the body is [`felhom_fuzz::pve_error_text`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::pve_error_text(data));
