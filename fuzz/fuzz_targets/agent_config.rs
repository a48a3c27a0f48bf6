//! Fuzz target `agent_config`: the body is [`felhom_fuzz::agent_config`], shared with the regression test
//! that replays the corpus in the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| felhom_fuzz::agent_config(data));
