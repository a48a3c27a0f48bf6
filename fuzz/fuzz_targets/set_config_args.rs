//! Fuzz target `set_config_args`: the body is [`felhom_fuzz::set_config_args`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::set_config_args(data));
