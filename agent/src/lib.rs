//! felhom-agent: the unprivileged half of the felhom host agent, and the typed library the
//! rest of the agent (the CLI, the service loop, later a reconcile loop or a hub client)
//! calls to talk to Proxmox VE and to the root helper.
//!
//! - [`pve`] — the Proxmox VE API client: typed reads, operations that return a task's
//!   [`Upid`](pve::Upid), [`wait_task`](pve::PveClient::wait_task) and
//!   [`wait_task_with`](pve::PveClient::wait_task_with) (follows the task log for
//!   progress), errors classified into [`PveError`](pve::PveError) variants a caller can
//!   act on, and the failure reasons of a task ([`pve::tasklog`]).
//! - [`helper_client`] — the client for `felhom-helper` (golden images, USB mounts, SMART,
//!   sensors) over its Unix socket.
//! - [`config`] and [`secret`] — the agent's configuration and its API token secret.
//! - [`report`], [`smart`], [`service`], [`cli`] — the health report, SMART parsing, the
//!   `run` service and the command line, all built on the modules above.
//! - [`drill`] — the restore drill (`backup verify`) and its schedule in `run`.
//!
//! The agent never spawns a process and holds no root rights; everything root-only goes
//! through the helper.
//!
//! # Connect, read, start an operation, wait for it
//!
//! The examples run against the in-process Proxmox simulator of the `felhom-tests` crate;
//! on a real node the settings come from [`config::AgentConfig::api_settings`] instead.
//! `examples/pve_tour.rs` is the same walk-through as a program
//! (`cargo run -p felhom-agent --example pve_tour`).
//!
//! ```
//! use std::time::Duration;
//!
//! use felhom_agent::pve::{ApiSettings, NodeName, PveClient, TlsMode, TokenId, WaitOptions};
//! use felhom_agent::secret::Secret;
//! use felhom_protocol::Vmid;
//! use felhom_tests::pve_sim::{PveSim, SimOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let sim = PveSim::start(SimOptions::default()).await?;
//! let settings = ApiSettings {
//!     api_url: sim.base_url().parse()?, // https://127.0.0.1:PORT
//!     node: NodeName::new("pve")?,
//!     token_id: TokenId::new("felhom@pve!agent")?,
//!     token_secret: Secret::new(sim.token_secret()).expect("a non-empty secret"),
//!     tls: TlsMode::Pinned(sim.fingerprint().parse()?),
//!     tls_server_name: None,
//!     max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
//!     request_timeout: Duration::from_secs(30),
//! };
//! let pve = PveClient::new(&settings)?; // sends nothing yet
//!
//! // Typed reads.
//! let version = pve.version().await?;
//! assert!(!version.version.is_empty());
//! let containers = pve.containers().await?;
//! assert!(containers.iter().any(|c| c.vmid.get() == 101));
//!
//! // An operation returns the task's UPID at once; wait_task polls until it stops.
//! let upid = pve.start(Vmid::new(101)?).await?;
//! let done = pve
//!     .wait_task(&upid, WaitOptions::with_timeout(Duration::from_secs(60)))
//!     .await?;
//! assert_eq!(done.exitstatus, "OK");
//! # Ok(())
//! # }
//! ```
//!
//! # Handle a `PveError`
//!
//! Errors are classified from what Proxmox sends, so a caller matches on the variant rather
//! than on message text. A failed task ([`PveError::Task`](pve::PveError::Task)) carries the
//! log lines that explain it.
//!
//! ```
//! use std::time::Duration;
//!
//! use felhom_agent::pve::{
//!     ApiSettings, BackupMode, BackupRequest, BackupStarted, ConfigChange, ConfigKey,
//!     NodeName, PveClient, PveError, StorageId, TlsMode, TokenId, WaitOptions,
//! };
//! use felhom_agent::secret::Secret;
//! use felhom_protocol::Vmid;
//! use felhom_tests::pve_sim::{PveSim, SimOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! # let sim = PveSim::start(SimOptions::default()).await?;
//! # let pve = PveClient::new(&ApiSettings {
//! #     api_url: sim.base_url().parse()?,
//! #     node: NodeName::new("pve")?,
//! #     token_id: TokenId::new("felhom@pve!agent")?,
//! #     token_secret: Secret::new(sim.token_secret()).expect("a non-empty secret"),
//! #     tls: TlsMode::Pinned(sim.fingerprint().parse()?),
//! #     tls_server_name: None,
//! #     max_response_bytes: felhom_agent::pve::DEFAULT_MAX_RESPONSE_BYTES,
//! #     request_timeout: Duration::from_secs(30),
//! # })?;
//! // A backup holds the guest's lock; Proxmox refuses a config change meanwhile.
//! sim.state().set_lock(100, Some("backup"));
//! let change = ConfigChange::new().set(ConfigKey::Memory, "2048")?;
//! match pve.set_config(Vmid::new(100)?, &change).await {
//!     Err(PveError::Locked { lock, .. }) => assert_eq!(lock, "backup"),
//!     other => panic!("expected a lock error, got {other:?}"),
//! }
//!
//! // A task that fails says why: every error line of its log, not only the last one.
//! let backup = BackupRequest {
//!     vmid: Vmid::new(100)?,
//!     mode: BackupMode::Snapshot,
//!     storage: StorageId::new("local")?,
//!     notes_template: None,
//! };
//! let BackupStarted::Task(upid) = pve.vzdump(&backup).await? else {
//!     panic!("the guest is on this node, so a task starts");
//! };
//! match pve.wait_task(&upid, WaitOptions::default()).await {
//!     Err(PveError::Task(failure)) => {
//!         assert_eq!(failure.exitstatus, "job errors");
//!         assert_eq!(
//!             failure.reasons[0],
//!             "ERROR: Backup of VM 100 failed - CT is locked (backup)"
//!         );
//!     }
//!     other => panic!("expected a failed task, got {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod pve;
pub mod secret;

// Helper client, SMART parsing, health report, CLI and service (issue 4).
pub mod cli;
pub mod drill;
pub mod helper_client;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod service;
pub mod smart;
