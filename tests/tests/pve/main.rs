//! The `pve` test binary: the agent's Proxmox VE client against the simulator, the Python
//! fake PVE, hostile and keep-alive servers, and the simulator's own smoke tests. One module
//! per former test binary, under its old name: `cargo test -p felhom-tests --test pve
//! pve_client::` runs one.

mod pve_client;
mod pve_client_fixtures;
mod pve_client_secret;
mod pve_error_text;
mod pve_fakepve;
mod pve_hostile_server;
mod pve_keepalive;
mod pve_retry_policy;
mod pve_sim_smoke;
mod pve_sim_vs_fakepve;
mod pve_tasks;
mod pve_tls_server_name;
mod pve_transport_text;
