//! Fuzz target `protocol_newtypes`: the body is [`felhom_fuzz::protocol_newtypes`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::protocol_newtypes(data));
