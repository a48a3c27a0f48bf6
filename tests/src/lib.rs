//! Test support for felhom: the Proxmox VE simulator and helpers shared by the end-to-end tests
//! and the sandbox.

pub mod agent_env;
pub mod bins;
pub mod fake_helper;
pub mod fakepve;
pub mod helper_harness;
pub mod hostile_server;
pub mod keepalive_server;
pub mod pve_sim;
