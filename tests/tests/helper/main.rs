//! The `helper` test binary: the real `felhom-helper` under `systemd-socket-activate` with fake
//! tools and fake sysfs trees, with real loop devices (root), and with the real smartctl. One
//! module per former test binary, under its old name: `cargo test -p felhom-tests --test
//! helper helper_ops::` runs one.
//!
//! The modules share one process: the fake harness hands out block device nodes round-robin
//! across every harness of the process, and a test that attaches real loop devices holds
//! `felhom_tests::helper_harness::real_loop_devices()` so that no fake filesystem stands on a
//! node it attaches.

mod helper_activation;
mod helper_audit;
mod helper_hostile_inputs;
mod helper_loop_mount;
mod helper_ops;
mod helper_safety;
mod helper_security;
mod real_smartctl;
