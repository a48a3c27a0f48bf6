//! A stateful Proxmox VE API simulator over HTTPS for tests and the sandbox.
//!
//! [`PveSim::start`] serves `https://127.0.0.1:<port>/api2/json/...` with a freshly generated
//! CA and leaf certificate, authenticates `PVEAPIToken` headers, and imitates the wire
//! behaviour documented in `shared/reference/proxmox-api.md`: the `{"data": …}` envelope,
//! errors in the reason phrase (and, unless `legacy_wire`, in the body `message`), 403
//! permission messages, UPIDs and task status/log, guest locks while tasks run, and the
//! PVE 7 type drift (`"vmid":"106"`). Tests steer and observe it through [`SimState`].
//!
//! # What it serves (below `/api2/json`)
//!
//! `GET /version`, `GET /nodes`, `GET /access/permissions`; per node: `GET status`,
//! `GET tasks`, `GET|POST lxc` (create from a template, or restore with `restore=1`),
//! `GET|DELETE lxc/{vmid}`, `GET lxc/{vmid}/status/current`,
//! `POST lxc/{vmid}/status/{start,stop,shutdown,reboot}`, `GET|PUT lxc/{vmid}/config`,
//! `GET|POST lxc/{vmid}/snapshot`, `DELETE lxc/{vmid}/snapshot/{name}`,
//! `POST lxc/{vmid}/snapshot/{name}/rollback`, `GET storage`, `GET storage/{s}/content`,
//! `DELETE storage/{s}/content/{volid}`, `POST vzdump`, `GET tasks/{upid}/{status,log}`.
//! Anything else: `501 Method 'GET /x' not implemented`.
//!
//! # Semantics worth knowing
//!
//! * Default inventory: node `pve`; CT 100 `web` (running) and CT 101 `db` (stopped);
//!   storage `local` (dir: `backup,iso,vztmpl`, one Debian 12 template and one backup of
//!   CT 101) and `local-lvm` (lvmthin: `images,rootdir`).
//! * Permissions: the token starts with every privilege on `/`. A grant applies to its path
//!   and everything below; the deepest grant on a path wins (like a PVE ACL on a deeper
//!   path). [`SimState::revoke`] removes one privilege from a path and below.
//! * Tasks run for `task_duration` and are settled lazily: every request and every
//!   [`SimState`] accessor first finishes the tasks whose time is up, applying their effect
//!   (snapshot added, CT started, backup volume added, restored CT created) only on `OK` or
//!   `WARNINGS`. While a task runs its guest carries the `lock` (`backup`, `snapshot`,
//!   `snapshot-delete`, `rollback`, `create`, `destroyed`), so PUT config answers
//!   `500 CT is locked (…)`. Power operations on a locked guest fail inside the task (PVE
//!   8.2+) or synchronously with `legacy_wire` (PVE 7).
//! * A running task's log grows over its duration (first line at once, the rest spread
//!   evenly), so a client following it sees new lines arrive. `GET tasks` honours `source`
//!   (`archive` by default, `active`, `all`; running tasks have status `RUNNING`), `vmid`,
//!   `typefilter`, `errors`, `start`, `limit`, and sends `total`.
//! * Failures whose reason is not the last log line: vzdump of a locked guest
//!   (`ERROR: Backup of VM … failed - CT is locked (…)` … `TASK ERROR: job errors`), a
//!   restore onto a storage without room for the root filesystem (tar's
//!   `Cannot write: No space left on device` lines; see [`SimState::set_storage_used`]), and
//!   any scripted [`TaskOutcome::ErrorWithLog`].
//! * Storage content lists backups (`notes`, `protected`, `subtype`), templates, and the
//!   containers' root volumes on a `rootdir` storage.
//! * vzdump names archives `vzdump-lxc-<vmid>-YYYY_MM_DD-HH_MM_SS.tar[.zst|.gz|.lzo]` from
//!   `compress` (default `0` = plain `.tar`, as in PVE), in UTC.
//! * Faults are checked before authentication, for the next `times` requests whose method
//!   and path match; every request is recorded first (without headers, so never the secret).

mod api;
mod backup;
mod drill;
mod ha;
mod ipam;
mod knobs;
mod options;
mod patch;
mod pending;
mod server;
mod shared;
mod state;
pub(crate) mod tls;
mod util;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use options::{
    DEFAULT_TOKEN_SECRET, Fault, FaultKind, RecordedRequest, SimOptions, TaskOutcome,
};
pub use shared::BackupQuirk;
pub use state::SimState;

/// A running simulator; dropping it stops the server.
#[derive(Debug)]
pub struct PveSim {
    addr: SocketAddr,
    fingerprint: String,
    ca_pem: String,
    node: String,
    token_id: String,
    token_secret: String,
    state: SimState,
    shutdown: Option<watch::Sender<bool>>,
    accept_task: JoinHandle<()>,
}

impl PveSim {
    /// Starts the simulator on `127.0.0.1` with an ephemeral port.
    pub async fn start(opts: SimOptions) -> anyhow::Result<PveSim> {
        Self::start_on(opts, 0).await
    }

    /// Starts the simulator on `127.0.0.1` (ephemeral port) with a leaf certificate for
    /// exactly `names`, like a host with an ACME certificate for its DNS name reached at
    /// `127.0.0.1`.
    pub async fn start_with_cert_names(opts: SimOptions, names: &[&str]) -> anyhow::Result<PveSim> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let pki = tls::generate_for(&opts.node, &names)?;
        Self::start_with_pki(opts, 0, pki).await
    }

    /// Starts the simulator on `127.0.0.1` (ephemeral port) with a leaf certificate that
    /// expires `leaf_valid_for` from now, signed by a CA that expires `ca_valid_for` from now
    /// (for certificate expiry warnings).
    pub async fn start_with_cert_lifetimes(
        opts: SimOptions,
        leaf_valid_for: Duration,
        ca_valid_for: Duration,
    ) -> anyhow::Result<PveSim> {
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let lifetimes = tls::Lifetimes {
            leaf: Some(leaf_valid_for),
            ca: Some(ca_valid_for),
        };
        let pki = tls::generate_with(&opts.node, &names, lifetimes)?;
        Self::start_with_pki(opts, 0, pki).await
    }

    /// Starts the simulator on `127.0.0.1:port` (`0` = ephemeral).
    pub async fn start_on(opts: SimOptions, port: u16) -> anyhow::Result<PveSim> {
        let pki = tls::generate(&opts.node)?;
        Self::start_with_pki(opts, port, pki).await
    }

    async fn start_with_pki(opts: SimOptions, port: u16, pki: tls::Pki) -> anyhow::Result<PveSim> {
        let listener = server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let addr = listener.local_addr().context("listener address")?;
        let state = SimState {
            inner: Arc::new(Mutex::new(state::Inner::new(
                &opts,
                pki.fingerprint.clone(),
            ))),
        };
        let shared = Arc::new(server::Shared {
            state: state.clone(),
            token_id: opts.token_id.clone(),
            token_secret: opts.token_secret.clone(),
        });
        let (tx, rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        let accept_task = tokio::spawn(server::serve(listener, acceptor, shared, rx));
        Ok(PveSim {
            addr,
            fingerprint: pki.fingerprint,
            ca_pem: pki.ca_pem,
            node: opts.node,
            token_id: opts.token_id,
            token_secret: opts.token_secret,
            state,
            shutdown: Some(tx),
            accept_task,
        })
    }

    /// `https://127.0.0.1:PORT` (clients append `/api2/json`).
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of the leaf certificate, uppercase colon hex (PVE style).
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// PEM of the CA that signed the leaf (leaf SANs: 127.0.0.1, localhost).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Full token id.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// Token secret.
    pub fn token_secret(&self) -> &str {
        &self.token_secret
    }

    /// A handle on the simulator state.
    pub fn state(&self) -> SimState {
        self.state.clone()
    }
}

impl Drop for PveSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        self.accept_task.abort();
    }
}
