//! [`PveClient`]: typed reads and operations on the local Proxmox node.

use felhom_protocol::Vmid;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::args::*;
use super::error::PveError;
use super::http::{Http, Reply};
use super::types::*;
use super::upid::Upid;
use super::{ApiSettings, NodeName};

/// A typed client for the Proxmox VE API of one node, authenticated with an API token.
///
/// Cheap to clone (the connection pool is shared). Reads are retried on transient errors;
/// operations are sent exactly once and return the task's [`Upid`]; wait for it with
/// [`PveClient::wait_task`].
#[derive(Debug, Clone)]
pub struct PveClient {
    pub(crate) http: Http,
    node: NodeName,
}

fn decode<T: DeserializeOwned>(path: &str, v: Value) -> Result<T, PveError> {
    serde_json::from_value(v).map_err(|e| PveError::Decode {
        path: path.to_string(),
        message: e.to_string(),
    })
}

fn upid_of(path: &str, reply: Reply) -> Result<Upid, PveError> {
    match reply.data {
        Value::String(s) => s
            .parse()
            .map_err(|e: super::upid::UpidParseError| PveError::Decode {
                path: path.to_string(),
                message: e.to_string(),
            }),
        other => Err(PveError::Decode {
            path: path.to_string(),
            message: format!("expected a UPID string, got {other}"),
        }),
    }
}

fn flag(b: bool) -> String {
    if b { "1".into() } else { "0".into() }
}

impl PveClient {
    /// Builds a client (TLS configuration, connection pool, token header). Sends nothing.
    pub fn new(settings: &ApiSettings) -> Result<PveClient, PveError> {
        Ok(PveClient {
            http: Http::new(settings)?,
            node: settings.node.clone(),
        })
    }

    /// The node this client works on.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// When the certificates this client relies on expire: the one the server presented on
    /// the last handshake (none before the first request) and those in `tls_ca_file`.
    pub fn cert_dates(&self) -> super::certexpiry::CertDates {
        self.http.cert_dates()
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, PveError> {
        let reply = self.http.call(Method::GET, segments, query, None).await?;
        decode(&segments.join("/"), reply.data)
    }

    /// Like `get`, but a malformed field costs only itself (see [`super::fieldwise`]).
    async fn get_fieldwise<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, PveError> {
        let reply = self.http.call(Method::GET, segments, &[], None).await?;
        let path = segments.join("/");
        let (t, dropped) =
            super::fieldwise::decode::<T>(reply.data).map_err(|e| PveError::Decode {
                path: path.clone(),
                message: e.to_string(),
            })?;
        super::fieldwise::warn_once(&path, &dropped);
        Ok(t)
    }

    /// A list decoded entry by entry like [`PveClient::get_fieldwise`]; an entry whose
    /// required fields are malformed fails the list.
    pub(crate) async fn get_list_fieldwise<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Vec<T>, PveError> {
        let reply = self.http.call(Method::GET, segments, query, None).await?;
        let path = segments.join("/");
        let fail = |message: String| PveError::Decode {
            path: path.clone(),
            message,
        };
        let Value::Array(items) = reply.data else {
            return Err(fail(format!(
                "expected a list, got {}",
                super::fieldwise::kind(&reply.data)
            )));
        };
        let mut out = Vec::with_capacity(items.len());
        let mut dropped = Vec::new();
        for item in items {
            let (t, d) = super::fieldwise::decode::<T>(item).map_err(|e| fail(e.to_string()))?;
            out.push(t);
            dropped.extend(d);
        }
        super::fieldwise::warn_once(&path, &dropped);
        Ok(out)
    }

    pub(super) async fn dispatch(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(String, String)],
    ) -> Result<Upid, PveError> {
        let reply = if method == Method::DELETE {
            let query: Vec<(&str, String)> =
                form.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            self.http.call(method, segments, &query, None).await?
        } else {
            self.http.call(method, segments, &[], Some(form)).await?
        };
        let upid = upid_of(&segments.join("/"), reply)?;
        tracing::info!(upid = %upid, "task started");
        Ok(upid)
    }

    // ---- reads -------------------------------------------------------------------------

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo, PveError> {
        self.get(&["version"], &[]).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, PveError> {
        self.get(&["nodes"], &[]).await
    }

    /// `GET /nodes/{node}/status` (needs Sys.Audit).
    pub async fn node_status(&self) -> Result<NodeStatus, PveError> {
        self.get_fieldwise(&["nodes", self.node.as_str(), "status"])
            .await
    }

    /// `GET /nodes/{node}/lxc` — only containers the token may audit are listed.
    pub async fn containers(&self) -> Result<Vec<ContainerStatus>, PveError> {
        let mut list: Vec<ContainerStatus> = self
            .get_list_fieldwise(&["nodes", self.node.as_str(), "lxc"], &[])
            .await?;
        list.sort_by_key(|c| c.vmid);
        Ok(list)
    }

    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    pub async fn container_status(&self, vmid: Vmid) -> Result<ContainerStatus, PveError> {
        let id = vmid.to_string();
        self.get(
            &["nodes", self.node.as_str(), "lxc", &id, "status", "current"],
            &[],
        )
        .await
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config`, with the digest for [`PveClient::set_config`].
    pub async fn container_config(&self, vmid: Vmid) -> Result<ContainerConfig, PveError> {
        let id = vmid.to_string();
        self.get(&["nodes", self.node.as_str(), "lxc", &id, "config"], &[])
            .await
    }

    /// `GET /nodes/{node}/lxc/{vmid}/pending` — every config key with its current value and
    /// the change waiting for the next start, if any.
    pub async fn pending(&self, vmid: Vmid) -> Result<Vec<super::pending::PendingEntry>, PveError> {
        let id = vmid.to_string();
        self.get(&["nodes", self.node.as_str(), "lxc", &id, "pending"], &[])
            .await
    }

    /// `GET /nodes/{node}/lxc/{vmid}/snapshot` (includes the pseudo-entry `current`).
    pub async fn snapshots(&self, vmid: Vmid) -> Result<Vec<SnapshotEntry>, PveError> {
        let id = vmid.to_string();
        self.get(&["nodes", self.node.as_str(), "lxc", &id, "snapshot"], &[])
            .await
    }

    /// `GET /nodes/{node}/storage` — only storages the token may see.
    pub async fn storages(&self) -> Result<Vec<StorageEntry>, PveError> {
        self.get(&["nodes", self.node.as_str(), "storage"], &[])
            .await
    }

    /// `GET /nodes/{node}/storage/{storage}/content[?content=…]`.
    pub async fn storage_content(
        &self,
        storage: &StorageId,
        kind: Option<ContentKind>,
    ) -> Result<Vec<StorageContentEntry>, PveError> {
        let query: Vec<(&str, String)> = kind
            .map(|k| vec![("content", k.as_str().to_string())])
            .unwrap_or_default();
        self.get(
            &[
                "nodes",
                self.node.as_str(),
                "storage",
                storage.as_str(),
                "content",
            ],
            &query,
        )
        .await
    }

    /// `GET /nodes/{node}/storage/{storage}/content?content=backup&vmid=N` — the backups
    /// of one guest on one storage.
    pub async fn guest_backups(
        &self,
        storage: &StorageId,
        vmid: Vmid,
    ) -> Result<Vec<StorageContentEntry>, PveError> {
        self.get(
            &[
                "nodes",
                self.node.as_str(),
                "storage",
                storage.as_str(),
                "content",
            ],
            &[
                ("content", ContentKind::Backup.as_str().to_string()),
                ("vmid", vmid.to_string()),
            ],
        )
        .await
    }

    /// `GET /nodes/{node}/tasks/{upid}/status` (on the UPID's node).
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        self.get(
            &["nodes", upid.node(), "tasks", upid.as_str(), "status"],
            &[],
        )
        .await
    }

    /// `GET /nodes/{node}/tasks/{upid}/log?start=&limit=` — `start` is 0-based, `limit` 0
    /// means "to the end".
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<TaskLog, PveError> {
        let segments = ["nodes", upid.node(), "tasks", upid.as_str(), "log"];
        let reply = self
            .http
            .call(
                Method::GET,
                &segments,
                &[("start", start.to_string()), ("limit", limit.to_string())],
                None,
            )
            .await?;
        Ok(TaskLog {
            lines: decode(&segments.join("/"), reply.data)?,
            total: reply.total,
        })
    }

    /// `GET /access/permissions[?path=…]` — what this token may do (a preflight check).
    pub async fn permissions(&self, path: Option<&str>) -> Result<Permissions, PveError> {
        let query: Vec<(&str, String)> = path
            .map(|p| vec![("path", p.to_string())])
            .unwrap_or_default();
        self.get(&["access", "permissions"], &query).await
    }

    // ---- operations (async tasks) ------------------------------------------------------

    /// Restores a container from a backup archive: `POST /nodes/{node}/lxc` with
    /// `restore=1` (task `vzrestore`).
    pub async fn restore(&self, req: &RestoreRequest) -> Result<Upid, PveError> {
        let mut form = vec![
            ("vmid".to_string(), req.vmid.to_string()),
            ("ostemplate".to_string(), req.archive.to_string()),
            ("restore".to_string(), "1".to_string()),
            ("storage".to_string(), req.storage.to_string()),
        ];
        if req.unique {
            form.push(("unique".into(), "1".into()));
        }
        if req.force {
            form.push(("force".into(), "1".into()));
        }
        if req.start {
            form.push(("start".into(), "1".into()));
        }
        if let Some(h) = &req.hostname {
            ConfigKey::Hostname
                .check_value(h)
                .map_err(|e| PveError::InvalidArgument(e.to_string()))?;
            form.push(("hostname".into(), h.clone()));
        }
        self.dispatch(Method::POST, &["nodes", self.node.as_str(), "lxc"], &form)
            .await
    }

    /// Backs up one container with vzdump (zstd) without pruning older backups
    /// (`remove=0`, like the web UI's "Backup now"). Proxmox answers the literal `"OK"` when
    /// no task was started (guest not on this node); that is [`BackupStarted::NothingToDo`].
    pub async fn vzdump(&self, req: &BackupRequest) -> Result<BackupStarted, PveError> {
        self.vzdump_with(req, false).await
    }

    /// Like [`PveClient::vzdump`]; `prune` sends `remove=1`, so vzdump prunes older backups
    /// of the guest by the storage's retention settings after a successful backup (the API
    /// default when `remove` is absent, which this client never leaves it).
    pub async fn vzdump_with(
        &self,
        req: &BackupRequest,
        prune: bool,
    ) -> Result<BackupStarted, PveError> {
        let mut form = vec![
            ("vmid".to_string(), req.vmid.to_string()),
            ("mode".to_string(), req.mode.as_str().to_string()),
            ("storage".to_string(), req.storage.to_string()),
            ("compress".to_string(), "zstd".to_string()),
            ("remove".to_string(), flag(prune)),
        ];
        if let Some(notes) = &req.notes_template {
            if notes.chars().any(char::is_control) || notes.len() > 1024 {
                return Err(PveError::InvalidArgument(
                    "notes template must be a single line of at most 1024 bytes".into(),
                ));
            }
            form.push(("notes-template".into(), notes.clone()));
        }
        let segments = ["nodes", self.node.as_str(), "vzdump"];
        let reply = self
            .http
            .call(Method::POST, &segments, &[], Some(&form))
            .await?;
        if reply.data.as_str() == Some("OK") {
            tracing::info!(vmid = %req.vmid, "vzdump answered OK: no task started on this node");
            return Ok(BackupStarted::NothingToDo);
        }
        let upid = upid_of(&segments.join("/"), reply)?;
        tracing::info!(upid = %upid, "task started");
        Ok(BackupStarted::Task(upid))
    }

    /// `POST …/lxc/{vmid}/snapshot` (task `vzsnapshot`).
    pub async fn snapshot_create(
        &self,
        vmid: Vmid,
        name: &SnapshotName,
        description: Option<&str>,
    ) -> Result<Upid, PveError> {
        let id = vmid.to_string();
        let mut form = vec![("snapname".to_string(), name.to_string())];
        if let Some(d) = description {
            form.push(("description".into(), d.to_string()));
        }
        self.dispatch(
            Method::POST,
            &["nodes", self.node.as_str(), "lxc", &id, "snapshot"],
            &form,
        )
        .await
    }

    /// `POST …/lxc/{vmid}/snapshot/{name}/rollback` (task `vzrollback`); `start` starts the
    /// container afterwards.
    pub async fn snapshot_rollback(
        &self,
        vmid: Vmid,
        name: &SnapshotName,
        start: bool,
    ) -> Result<Upid, PveError> {
        let id = vmid.to_string();
        let form = if start {
            vec![("start".to_string(), flag(true))]
        } else {
            Vec::new()
        };
        self.dispatch(
            Method::POST,
            &[
                "nodes",
                self.node.as_str(),
                "lxc",
                &id,
                "snapshot",
                name.as_str(),
                "rollback",
            ],
            &form,
        )
        .await
    }

    /// `DELETE …/lxc/{vmid}/snapshot/{name}` (task `vzdelsnapshot`).
    pub async fn snapshot_delete(&self, vmid: Vmid, name: &SnapshotName) -> Result<Upid, PveError> {
        let id = vmid.to_string();
        self.dispatch(
            Method::DELETE,
            &[
                "nodes",
                self.node.as_str(),
                "lxc",
                &id,
                "snapshot",
                name.as_str(),
            ],
            &[],
        )
        .await
    }

    async fn power(
        &self,
        vmid: Vmid,
        action: &str,
        form: &[(String, String)],
    ) -> Result<Upid, PveError> {
        let id = vmid.to_string();
        self.dispatch(
            Method::POST,
            &["nodes", self.node.as_str(), "lxc", &id, "status", action],
            form,
        )
        .await
    }

    /// `POST …/status/start` (task `vzstart`).
    pub async fn start(&self, vmid: Vmid) -> Result<Upid, PveError> {
        self.power(vmid, "start", &[]).await
    }

    /// `POST …/status/stop` (task `vzstop`): immediate stop.
    pub async fn stop(&self, vmid: Vmid) -> Result<Upid, PveError> {
        self.power(vmid, "stop", &[]).await
    }

    /// `POST …/status/shutdown` (task `vzshutdown`): clean shutdown, failing after
    /// `timeout_secs` (Proxmox's `forceStop` is not set).
    pub async fn shutdown(&self, vmid: Vmid, timeout_secs: u32) -> Result<Upid, PveError> {
        self.shutdown_with(vmid, timeout_secs, false).await
    }

    /// `POST …/status/shutdown` (task `vzshutdown`): clean shutdown; after `timeout_secs`
    /// the task fails, or — with `force_stop` (`forceStop=1`) — stops the container hard.
    pub async fn shutdown_with(
        &self,
        vmid: Vmid,
        timeout_secs: u32,
        force_stop: bool,
    ) -> Result<Upid, PveError> {
        let mut form = vec![("timeout".to_string(), timeout_secs.to_string())];
        if force_stop {
            form.push(("forceStop".into(), flag(true)));
        }
        self.power(vmid, "shutdown", &form).await
    }

    /// `PUT …/lxc/{vmid}/config` — synchronous; applies `change` only if the config digest
    /// still matches (when one is given). Never retried: a 595/596 or 502/503/504 is
    /// [`PveError::OutcomeUnknown`].
    pub async fn set_config(&self, vmid: Vmid, change: &ConfigChange) -> Result<(), PveError> {
        let form = change
            .form()
            .map_err(|e| PveError::InvalidArgument(e.to_string()))?;
        let id = vmid.to_string();
        self.http
            .call(
                Method::PUT,
                &["nodes", self.node.as_str(), "lxc", &id, "config"],
                &[],
                Some(&form),
            )
            .await?;
        tracing::info!(%vmid, "container config updated");
        Ok(())
    }
}
