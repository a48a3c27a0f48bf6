//! Test support for felhom: the Proxmox VE simulator and helpers shared by the end-to-end tests
//! and the sandbox.

// tests/Cargo.toml allows these for the test binaries; the library reads what other processes
// send (HTTP requests, helper frames, tool output), so it keeps the workspace's warnings.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod agent_env;
pub mod bins;
pub mod fake_helper;
pub mod fakepve;
pub mod helper_harness;
pub mod hostile_server;
pub mod keepalive_server;
pub mod pve_sim;
