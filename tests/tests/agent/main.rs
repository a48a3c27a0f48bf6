//! The `agent` test binary: the real `felhom-agent` against the Proxmox simulator and the fake
//! or real helper (its commands, output, service mode, metrics, logs), and the fence around
//! the agent's sources. One module per former test binary, under its old name:
//! `cargo test -p felhom-tests --test agent agent_cli::` runs one.

mod agent_backup_cli;
mod agent_cli;
mod agent_drill;
mod agent_drill_schedule;
mod agent_e2e;
mod agent_fence;
mod agent_metrics;
mod agent_service;
mod agent_set_config_cli;
mod agent_smart_fixtures;
mod agent_tasks_cli;
mod agent_tls_expiry;
mod logging;
