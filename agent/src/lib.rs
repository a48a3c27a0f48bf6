//! felhom-agent: the unprivileged half of the felhom host agent.
//!
//! It does all Proxmox VE REST API work with a scoped API token ([`pve`]), reads its
//! configuration ([`config`]) and keeps the token secret ([`secret`]).

pub mod config;
pub mod pve;
pub mod secret;

// Helper client, SMART parsing, health report, CLI and service (issue 4).
pub mod cli;
pub mod helper_client;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod service;
pub mod smart;
