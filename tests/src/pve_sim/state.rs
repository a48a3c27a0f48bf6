//! The simulated cluster's state: inventory, permissions, tasks, faults and the request log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::options::{Fault, RecordedRequest, TaskOutcome};
use super::util::{log_stamp, now_epoch, sha1_hex, vzdump_stamp};

/// Every privilege PVE 9 knows (the default grant on `/`).
pub(crate) const ALL_PRIVS: &[&str] = &[
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "Sys.AccessNetwork",
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "User.Modify",
];

/// A container snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) snaptime: u64,
    pub(crate) parent: Option<String>,
    pub(crate) config: Map<String, Value>,
}

/// A container on the simulated node.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub(crate) config: Map<String, Value>,
    pub(crate) running: bool,
    pub(crate) started_at: u64,
    pub(crate) pid: u32,
    pub(crate) snapshots: Vec<Snapshot>,
    pub(crate) parent: Option<String>,
    /// Changes waiting for the next start (`Null` = delete).
    pub(crate) pending: Map<String, Value>,
}

/// A volume on a storage (template or backup archive).
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub(crate) volid: String,
    pub(crate) content: String,
    pub(crate) format: String,
    pub(crate) size: u64,
    pub(crate) ctime: u64,
    pub(crate) vmid: Option<u32>,
    pub(crate) notes: Option<String>,
    /// Protected from pruning and removal (backups).
    pub(crate) protected: bool,
    /// For backups: the guest config stored in the archive.
    pub(crate) archive_config: Option<Map<String, Value>>,
}

/// A storage of the node.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) content: Vec<String>,
    pub(crate) path: Option<String>,
    pub(crate) total: u64,
    pub(crate) used: u64,
    pub(crate) volumes: Vec<Volume>,
    /// The storage's `prune-backups keep-last` (`None`: keep all).
    pub(crate) keep_last: Option<u32>,
}

/// What a task does to the state when it ends successfully.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Start(u32),
    Stop(u32),
    Snapshot {
        vmid: u32,
        name: String,
        description: String,
    },
    DeleteSnapshot {
        vmid: u32,
        name: String,
    },
    Rollback {
        vmid: u32,
        name: String,
        start: bool,
    },
    Backup {
        storage: String,
        volume: Volume,
    },
    Create {
        vmid: u32,
        config: Map<String, Value>,
        start: bool,
        /// `unique=1` restore: register the new MACs in IPAM (pve-container `API2/LXC.pm`
        /// `create_vm` calls `create_ifaces_ipams_ips` when `$unique`).
        ipam: bool,
    },
    /// Removes the guest; `purge` also takes it out of HA.
    Destroy {
        vmid: u32,
        purge: bool,
    },
    DeleteVolume {
        storage: String,
        volid: String,
    },
    /// Several effects in order (vzdump of several guests).
    Batch(Vec<Effect>),
}

/// An asynchronous task (worker) with its UPID.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) upid: String,
    pub(crate) node: String,
    pub(crate) pid: u32,
    pub(crate) pstart: u32,
    pub(crate) starttime: u64,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) started: Instant,
    pub(crate) duration: Duration,
    /// Lines visible while the task runs.
    pub(crate) log_running: Vec<String>,
    /// Lines appended when it ends successfully (before WARN/TASK lines).
    pub(crate) log_done: Vec<String>,
    pub(crate) outcome: TaskOutcome,
    pub(crate) effect: Option<Effect>,
    /// Guest whose `lock` this task holds, and the lock name.
    pub(crate) lock: Option<(u32, String)>,
    /// Final log and exit status once stopped.
    pub(crate) finished: Option<(Vec<String>, String)>,
}

impl Task {
    /// The log as currently visible. A running task's log grows over its duration like a
    /// real worker's: the first line at once, the others spread evenly until its end.
    pub(crate) fn log(&self) -> Vec<String> {
        match &self.finished {
            Some((log, _)) => log.clone(),
            None => {
                let n = self.log_running.len();
                let elapsed = self.started.elapsed().as_secs_f64();
                let total = self.duration.as_secs_f64();
                let shown = if n == 0 || total <= 0.0 {
                    n
                } else {
                    (1 + ((n - 1) as f64 * (elapsed / total)) as usize).min(n)
                };
                self.log_running[..shown].to_vec()
            }
        }
    }
}

/// All mutable simulator state.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) node: String,
    pub(crate) token_id: String,
    pub(crate) legacy_wire: bool,
    pub(crate) version: String,
    pub(crate) fingerprint: String,
    pub(crate) boot_epoch: u64,
    pub(crate) task_duration: Duration,
    pub(crate) unauthorized_delay: Duration,
    pub(crate) containers: BTreeMap<u32, Container>,
    pub(crate) storages: Vec<Storage>,
    pub(crate) grants: Vec<(String, BTreeSet<String>)>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) next_outcome: Option<TaskOutcome>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) next_pid: u32,
    /// HA-managed containers and their requested state (`started`, `stopped`).
    pub(crate) ha: BTreeMap<u32, String>,
    /// A deviation for the next vzdump (taken by it).
    pub(crate) backup_quirk: Option<super::shared::BackupQuirk>,
    /// SDN IPAM/DHCP reservations: MAC address (upper case) → the guest it belongs to.
    pub(crate) ipam: BTreeMap<String, u32>,
    /// Fields replaced in read answers ([`SimState::patch_field`]).
    pub(crate) patches: Vec<super::patch::FieldPatch>,
    /// Backups a (simulated) Proxmox Backup Server verify job has checked: volid → state.
    pub(crate) verified: BTreeMap<String, String>,
    /// The node's local time for archive names on directory storages: `(write, read)`
    /// offsets from UTC in seconds (see [`SimState::set_local_time`]); `None`: UTC.
    pub(crate) local_time: Option<(i64, i64)>,
    /// Containers that stop on their own this long after each start
    /// ([`SimState::set_stop_after_start`]).
    pub(crate) stop_after: BTreeMap<u32, Duration>,
    /// When each of those stops next.
    pub(crate) stop_at: BTreeMap<u32, Instant>,
    /// A failed restore leaves its guest behind ([`SimState::set_failed_restore_leaves_guest`]).
    pub(crate) failed_restore_leaves_guest: bool,
    /// Guests elsewhere in the cluster (a VM, another node's container), by vmid: kind
    /// (`VM`/`CT`) and node ([`SimState::add_cluster_guest`]).
    pub(crate) cluster_guests: BTreeMap<u32, (String, String)>,
}

/// Splits an ACL path into its components (`/vms/100` → `["vms","100"]`).
fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// Canonical text of a config, hashed into its digest.
pub(crate) fn config_digest(config: &Map<String, Value>) -> String {
    let mut text = String::new();
    for (k, v) in config {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("{k}: {v}\n"));
    }
    sha1_hex(text.as_bytes())
}

/// A locally administered MAC address derived from a seed, in PVE's uppercase style.
pub(crate) fn mac_for(seed: u32) -> String {
    let b = seed.to_be_bytes();
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        b[1] ^ 0x5A,
        b[2] ^ 0x3C,
        b[3]
    )
}

/// A realistic default container config.
pub(crate) fn default_ct_config(vmid: u32, hostname: &str) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("arch".into(), json!("amd64"));
    c.insert("cores".into(), json!(2));
    c.insert("features".into(), json!("keyctl=1,nesting=1"));
    c.insert("hostname".into(), json!(hostname));
    c.insert("memory".into(), json!(1024));
    c.insert(
        "net0".into(),
        json!(format!(
            "name=eth0,bridge=vmbr0,firewall=1,hwaddr={},ip=dhcp,type=veth",
            mac_for(vmid)
        )),
    );
    c.insert("onboot".into(), json!(1));
    c.insert("ostype".into(), json!("debian"));
    c.insert(
        "rootfs".into(),
        json!(format!("local-lvm:vm-{vmid}-disk-0,size=8G")),
    );
    c.insert("swap".into(), json!(512));
    c.insert("unprivileged".into(), json!(1));
    c
}

/// Size in bytes of a `size=8G` style rootfs option (4 GiB when absent).
pub(crate) fn rootfs_bytes(config: &Map<String, Value>) -> u64 {
    let rootfs = config.get("rootfs").and_then(Value::as_str).unwrap_or("");
    for opt in rootfs.split(',') {
        if let Some(size) = opt.strip_prefix("size=") {
            let (num, unit) = size.split_at(size.len().saturating_sub(1));
            let mult: u64 = match unit {
                "T" => 1 << 40,
                "G" => 1 << 30,
                "M" => 1 << 20,
                "K" => 1 << 10,
                _ => 1,
            };
            let n: f64 = num.parse().unwrap_or(4.0);
            return (n * mult as f64) as u64;
        }
    }
    4 << 30
}

impl Inner {
    /// Builds the default inventory.
    pub(crate) fn new(opts: &super::options::SimOptions, fingerprint: String) -> Self {
        let now = now_epoch();
        let mut inner = Inner {
            node: opts.node.clone(),
            token_id: opts.token_id.clone(),
            legacy_wire: opts.legacy_wire,
            version: opts.version.clone(),
            fingerprint,
            boot_epoch: now.saturating_sub(2_417_517),
            task_duration: opts.task_duration,
            unauthorized_delay: opts.unauthorized_delay,
            containers: BTreeMap::new(),
            storages: vec![
                Storage {
                    name: "local".into(),
                    kind: "dir".into(),
                    content: vec!["vztmpl".into(), "backup".into(), "iso".into()],
                    path: Some("/var/lib/vz".into()),
                    total: 100_861_726_720,
                    used: 9_436_041_216,
                    volumes: vec![Volume {
                        volid: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
                        content: "vztmpl".into(),
                        format: "tzst".into(),
                        size: 126_159_487,
                        ctime: now.saturating_sub(86_400 * 40),
                        vmid: None,
                        notes: None,
                        protected: false,
                        archive_config: None,
                    }],
                    keep_last: None,
                },
                Storage {
                    name: "local-lvm".into(),
                    kind: "lvmthin".into(),
                    content: vec!["rootdir".into(), "images".into()],
                    path: None,
                    total: 374_538_764_288,
                    used: 21_093_238_374,
                    volumes: Vec::new(),
                    keep_last: None,
                },
            ],
            grants: vec![(
                "/".into(),
                ALL_PRIVS.iter().map(|p| p.to_string()).collect(),
            )],
            tasks: Vec::new(),
            next_outcome: None,
            faults: Vec::new(),
            requests: Vec::new(),
            next_pid: 0x0001_D3A0,
            backup_quirk: None,
            ha: BTreeMap::new(),
            ipam: BTreeMap::new(),
            patches: Vec::new(),
            verified: BTreeMap::new(),
            local_time: None,
            stop_after: BTreeMap::new(),
            stop_at: BTreeMap::new(),
            failed_restore_leaves_guest: false,
            cluster_guests: BTreeMap::new(),
        };
        inner.add_container(100, "web", true);
        inner.add_container(101, "db", false);
        if let Some(ct) = inner.containers.get_mut(&101) {
            ct.config.insert("memory".into(), json!(2048));
            ct.config.insert("cores".into(), json!(1));
            ct.config.insert("onboot".into(), json!(0));
        }
        let backup_time = now.saturating_sub(86_400 * 2 + 3_600 * 3);
        inner.add_backup_at("local", 101, backup_time);
        inner
    }

    pub(crate) fn add_container(&mut self, vmid: u32, hostname: &str, running: bool) {
        let now = now_epoch();
        let pid = self.alloc_pid();
        self.containers.insert(
            vmid,
            Container {
                config: default_ct_config(vmid, hostname),
                running,
                started_at: now.saturating_sub(if running { 3_600 * 26 } else { 0 }),
                pid,
                snapshots: Vec::new(),
                parent: None,
                pending: Map::new(),
            },
        );
    }

    pub(crate) fn alloc_pid(&mut self) -> u32 {
        self.next_pid = self.next_pid.wrapping_add(0x1F3);
        self.next_pid
    }

    pub(crate) fn storage_mut(&mut self, name: &str) -> Option<&mut Storage> {
        self.storages.iter_mut().find(|s| s.name == name)
    }

    pub(crate) fn storage(&self, name: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.name == name)
    }

    /// Whether `storage` is a Proxmox Backup Server storage.
    pub(crate) fn is_pbs(&self, storage: &str) -> bool {
        self.storage(storage).is_some_and(|s| s.kind == "pbs")
    }

    /// Finds a volume by volid on any storage.
    pub(crate) fn volume(&self, volid: &str) -> Option<&Volume> {
        let (store, _) = volid.split_once(':')?;
        self.storage(store)?
            .volumes
            .iter()
            .find(|v| v.volid == volid)
    }

    /// A new backup volume of `vmid` (not yet added) with a name unique on the storage.
    pub(crate) fn new_backup_volume(&self, storage: &str, vmid: u32, at: u64, ext: &str) -> Volume {
        let existing: BTreeSet<String> = self
            .storage(storage)
            .map(|s| s.volumes.iter().map(|v| v.volid.clone()).collect())
            .unwrap_or_default();
        let mut t = at;
        let pbs = self.is_pbs(storage);
        let volid = loop {
            let v = if pbs {
                super::shared::pbs_volid(storage, vmid, t)
            } else {
                let (write, _) = self.local_time.unwrap_or((0, 0));
                format!(
                    "{storage}:backup/vzdump-lxc-{vmid}-{}.tar{ext}",
                    vzdump_stamp(t.saturating_add_signed(write))
                )
            };
            if !existing.contains(&v) {
                break v;
            }
            t += 1;
        };
        let archive_config = self
            .containers
            .get(&vmid)
            .map(|c| c.config.clone())
            .unwrap_or_else(|| default_ct_config(vmid, &format!("CT{vmid}")));
        let format = if pbs {
            "pbs-ct".to_string()
        } else {
            format!("tar{ext}")
        };
        Volume {
            volid,
            content: "backup".into(),
            format,
            size: 187_000_000 + u64::from(vmid % 97) * 1_048_576,
            // A directory storage derives `ctime` from the file name's local time
            // (pve-storage `PVE/Storage.pm` `archive_info`: `timelocal` of the name's
            // fields); a PBS snapshot's name is UTC.
            ctime: match self.local_time {
                Some((write, read)) if !pbs => t.saturating_add_signed(write - read),
                _ => t,
            },
            vmid: Some(vmid),
            notes: None,
            protected: false,
            archive_config: Some(archive_config),
        }
    }

    pub(crate) fn add_backup_at(&mut self, storage: &str, vmid: u32, at: u64) -> String {
        let vol = self.new_backup_volume(storage, vmid, at, ".zst");
        let volid = vol.volid.clone();
        if let Some(s) = self.storage_mut(storage) {
            s.volumes.push(vol);
        }
        volid
    }

    // ---------------------------------------------------------------- permissions

    /// Effective privileges on `path`: the deepest grant on the path or an ancestor wins.
    pub(crate) fn privs_on(&self, path: &str) -> BTreeSet<String> {
        let want = components(path);
        let mut best: Option<(usize, &BTreeSet<String>)> = None;
        for (gpath, privs) in &self.grants {
            let g = components(gpath);
            if g.len() <= want.len()
                && g.iter().zip(&want).all(|(a, b)| a == b)
                && best.is_none_or(|(len, _)| g.len() >= len)
            {
                best = Some((g.len(), privs));
            }
        }
        best.map(|(_, p)| p.clone()).unwrap_or_default()
    }

    pub(crate) fn has(&self, path: &str, privilege: &str) -> bool {
        self.privs_on(path).contains(privilege)
    }

    pub(crate) fn revoke(&mut self, path: &str, privilege: &str) {
        let norm = format!("/{}", components(path).join("/"));
        if let Some((_, privs)) = self
            .grants
            .iter_mut()
            .find(|(p, _)| components(p) == components(&norm))
        {
            privs.remove(privilege);
            return;
        }
        let mut inherited = self.privs_on(&norm);
        inherited.remove(privilege);
        self.grants.push((norm, inherited));
    }

    // ---------------------------------------------------------------- tasks

    /// Creates a UPID-bearing task, consuming the pending outcome override.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_task(
        &mut self,
        kind: &str,
        id: &str,
        log_running: Vec<String>,
        log_done: Vec<String>,
        effect: Option<Effect>,
        lock: Option<(u32, &str)>,
        forced_error: Option<String>,
    ) -> String {
        let pid = self.alloc_pid();
        let starttime = now_epoch();
        let pstart = ((starttime.saturating_sub(self.boot_epoch)) * 100) as u32;
        let upid = format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, pid, pstart, starttime, kind, id, self.token_id
        );
        let mut outcome = self.next_outcome.take().unwrap_or(TaskOutcome::Ok);
        let refused = forced_error.is_some();
        if let Some(err) = forced_error {
            outcome = TaskOutcome::Error(err);
        }
        let lock = match lock {
            // A task refused up front (e.g. `CT is locked`) never takes the lock.
            _ if refused => None,
            None => None,
            Some((vmid, name)) => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.config.insert("lock".into(), json!(name));
                }
                Some((vmid, name.to_string()))
            }
        };
        self.tasks.push(Task {
            upid: upid.clone(),
            node: self.node.clone(),
            pid,
            pstart,
            starttime,
            kind: kind.into(),
            id: id.into(),
            user: self.token_id.clone(),
            started: Instant::now(),
            duration: self.task_duration,
            log_running,
            log_done,
            outcome,
            effect,
            lock,
            finished: None,
        });
        upid
    }

    /// Finishes every task whose time is up, applying effects in start order.
    pub(crate) fn settle(&mut self) {
        let now = Instant::now();
        for i in 0..self.tasks.len() {
            let due = {
                let t = &self.tasks[i];
                t.finished.is_none() && now.duration_since(t.started) >= t.duration
            };
            if due {
                self.finish_task(i);
            }
        }
        self.stop_due(now);
    }

    fn finish_task(&mut self, i: usize) {
        let task = self.tasks[i].clone();
        if let Some((vmid, lock)) = &task.lock {
            if let Some(ct) = self.containers.get_mut(vmid) {
                if ct.config.get("lock").and_then(Value::as_str) == Some(lock.as_str()) {
                    ct.config.remove("lock");
                }
            }
        }
        let mut log = task.log_running.clone();
        let exit = match &task.outcome {
            TaskOutcome::Ok => {
                if let Some(effect) = &task.effect {
                    self.apply(effect.clone());
                }
                log.extend(task.log_done.iter().cloned());
                log.push("TASK OK".into());
                "OK".to_string()
            }
            TaskOutcome::Warnings(warnings) => {
                if let Some(effect) = &task.effect {
                    self.apply(effect.clone());
                }
                log.extend(task.log_done.iter().cloned());
                for w in warnings {
                    log.push(format!("WARN: {w}"));
                }
                log.push(format!("TASK WARNINGS: {}", warnings.len()));
                format!("WARNINGS: {}", warnings.len())
            }
            TaskOutcome::Error(_) | TaskOutcome::ErrorWithLog { .. } => {
                let (lines, msg) = match &task.outcome {
                    TaskOutcome::ErrorWithLog { lines, message } => (lines.clone(), message),
                    TaskOutcome::Error(m) => (Vec::new(), m),
                    _ => (Vec::new(), &String::new()),
                };
                log.extend(lines);
                if let Some(Effect::Create { vmid, .. }) = &task.effect {
                    // A failed create leaves no container behind.
                    let placeholder = self.containers.get(vmid).is_some_and(|c| c.pid == 0);
                    if placeholder && !self.failed_restore_leaves_guest {
                        self.containers.remove(vmid);
                    } else if placeholder {
                        // Left behind (stopped, half restored), as when Proxmox's own
                        // cleanup after a failed restore fails too.
                        if let Some(ct) = self.containers.get_mut(vmid) {
                            ct.pid = 1;
                        }
                    }
                }
                let single = msg.trim_end().replace('\n', " ");
                log.push(format!("TASK ERROR: {single}"));
                single
            }
            // No effect, no final line; the status omits `exitstatus` (api/tasks.rs).
            TaskOutcome::NoExitStatus => "unknown".to_string(),
        };
        self.tasks[i].finished = Some((log, exit));
    }

    fn apply(&mut self, effect: Effect) {
        let now = now_epoch();
        match effect {
            Effect::Start(vmid) => {
                let pid = self.alloc_pid();
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.running = true;
                    ct.started_at = now;
                    ct.pid = pid;
                    super::shared::apply_pending(&mut ct.config, &mut ct.pending);
                }
                self.arm_stop(vmid);
            }
            Effect::Stop(vmid) => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    ct.running = false;
                }
            }
            Effect::Snapshot {
                vmid,
                name,
                description,
            } => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    let mut config = ct.config.clone();
                    config.remove("lock");
                    ct.snapshots.push(Snapshot {
                        name: name.clone(),
                        description,
                        snaptime: now,
                        parent: ct.parent.clone(),
                        config,
                    });
                    ct.parent = Some(name);
                }
            }
            Effect::DeleteSnapshot { vmid, name } => {
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    let removed_parent = ct
                        .snapshots
                        .iter()
                        .find(|s| s.name == name)
                        .map(|s| s.parent.clone());
                    if let Some(new_parent) = removed_parent {
                        ct.snapshots.retain(|s| s.name != name);
                        for s in &mut ct.snapshots {
                            if s.parent.as_deref() == Some(name.as_str()) {
                                s.parent = new_parent.clone();
                            }
                        }
                        if ct.parent.as_deref() == Some(name.as_str()) {
                            ct.parent = new_parent;
                        }
                    }
                }
            }
            Effect::Rollback { vmid, name, start } => {
                let pid = self.alloc_pid();
                if let Some(ct) = self.containers.get_mut(&vmid) {
                    if let Some(snap) = ct.snapshots.iter().find(|s| s.name == name) {
                        ct.config = snap.config.clone();
                        ct.parent = Some(name);
                        ct.running = start;
                        if start {
                            ct.started_at = now;
                            ct.pid = pid;
                        }
                    }
                }
            }
            Effect::Backup {
                storage, volume, ..
            } => {
                if let Some(s) = self.storage_mut(&storage) {
                    s.used = s.used.saturating_add(volume.size);
                    s.volumes.push(volume);
                }
            }
            Effect::Create {
                vmid,
                config,
                start,
                ipam,
            } => {
                if ipam {
                    for mac in super::ipam::net_macs(&config) {
                        self.ipam.insert(mac, vmid);
                    }
                }
                let pid = self.alloc_pid();
                self.containers.insert(
                    vmid,
                    Container {
                        config,
                        running: start,
                        started_at: now,
                        pid,
                        snapshots: Vec::new(),
                        parent: None,
                        pending: Map::new(),
                    },
                );
            }
            Effect::Destroy { vmid, purge } => self.destroy(vmid, purge),
            Effect::DeleteVolume { storage, volid } => {
                if let Some(s) = self.storage_mut(&storage) {
                    if let Some(pos) = s.volumes.iter().position(|v| v.volid == volid) {
                        let v = s.volumes.remove(pos);
                        s.used = s.used.saturating_sub(v.size);
                    }
                }
            }
            Effect::Batch(effects) => {
                for e in effects {
                    self.apply(e);
                }
            }
        }
    }

    /// The log line vzdump prints for an archive path.
    pub(crate) fn archive_path(&self, volid: &str) -> String {
        let (store, rest) = volid.split_once(':').unwrap_or(("local", volid));
        let base = self
            .storage(store)
            .and_then(|s| s.path.clone())
            .unwrap_or_else(|| format!("/mnt/pve/{store}"));
        let file = rest.strip_prefix("backup/").unwrap_or(rest);
        format!("{base}/dump/{file}")
    }

    /// A timestamped task log line prefix, e.g. for vzdump.
    pub(crate) fn stamp(&self) -> String {
        log_stamp(now_epoch())
    }
}

/// Cheap clonable handle on the simulator state for tests.
#[derive(Clone, Debug)]
pub struct SimState {
    pub(crate) inner: Arc<Mutex<Inner>>,
}

impl SimState {
    /// Locks the state (recovering from poisoning: a panicked test must not hide state).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state after letting time-driven changes happen (tasks ending, guests
    /// stopping on their own).
    pub(crate) fn settled(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.lock();
        g.settle();
        g
    }
}
