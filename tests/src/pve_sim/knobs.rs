//! How tests steer and observe the simulator: the public methods of [`SimState`] (inventory,
//! permissions, task outcomes, faults, quirks, the request log). Split from `state.rs`, which
//! keeps the state itself and the rules that change it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::options::{Fault, RecordedRequest, TaskOutcome};
use super::state::{SimState, Storage};
use super::util::now_epoch;

impl SimState {
    /// Adds (or replaces) a container with a realistic default config.
    pub fn add_container(&self, vmid: u32, hostname: &str, running: bool) {
        self.settled().add_container(vmid, hostname, running);
    }

    /// Sets (or, with `None`, removes) one key of an existing container's config directly,
    /// e.g. a second NIC before a backup. Returns whether the container exists.
    pub fn set_config_value(&self, vmid: u32, key: &str, value: Option<Value>) -> bool {
        let mut g = self.settled();
        let Some(ct) = g.containers.get_mut(&vmid) else {
            return false;
        };
        match value {
            Some(v) => {
                ct.config.insert(key.to_string(), v);
            }
            None => {
                ct.config.remove(key);
            }
        }
        true
    }

    /// Removes a container at once, as an operator's `pct destroy` would (no task, no
    /// request recorded). Returns whether it existed.
    pub fn remove_container(&self, vmid: u32) -> bool {
        self.settled().containers.remove(&vmid).is_some()
    }

    /// Whether a container with this id exists (a container being created counts).
    pub fn container_exists(&self, vmid: u32) -> bool {
        self.settled().containers.contains_key(&vmid)
    }

    /// Whether the container runs; `None` when it does not exist.
    pub fn container_running(&self, vmid: u32) -> Option<bool> {
        self.settled().containers.get(&vmid).map(|c| c.running)
    }

    /// Sets the node's local time for vzdump archive names on directory storages: vzdump
    /// names the archive with the local time at UTC+`write_offset` seconds, and the storage
    /// lists the `ctime` that `timelocal` reads back from the name at UTC+`read_offset`. In
    /// the DST fall-back hour (e.g. Europe/Berlin on the last Sunday of October, 02:00–03:00
    /// twice) vzdump writes with the winter offset (3600) and `timelocal` takes the first,
    /// summer reading (7200): the listed `ctime` is an hour before the archive was written.
    pub fn set_local_time(&self, write_offset: i64, read_offset: i64) {
        self.settled().local_time = Some((write_offset, read_offset));
    }

    /// Records a verify job's result for the backup `volid`: `…/content` then lists its
    /// `verification` (`state`, the verify task's `upid`), as a PBS storage does.
    pub fn set_backup_verified(&self, volid: &str, state: &str) {
        self.settled()
            .verified
            .insert(volid.to_string(), state.to_string());
    }

    /// Registers every MAC address of CT `vmid` in the simulated SDN IPAM (as a guest on
    /// an SDN VNet with IPAM/DHCP gets on creation).
    pub fn ipam_reserve(&self, vmid: u32) {
        let mut g = self.settled();
        let macs = g
            .containers
            .get(&vmid)
            .map(|c| super::ipam::net_macs(&c.config))
            .unwrap_or_default();
        for mac in macs {
            g.ipam.insert(mac, vmid);
        }
    }

    /// The IPAM reservations: MAC address → guest.
    pub fn ipam_reservations(&self) -> BTreeMap<String, u32> {
        self.settled().ipam.clone()
    }

    /// The container's current config (without `digest`).
    pub fn container_config(&self, vmid: u32) -> Option<Map<String, Value>> {
        self.settled()
            .containers
            .get(&vmid)
            .map(|c| c.config.clone())
    }

    /// Names of the container's snapshots, oldest first.
    pub fn snapshot_names(&self, vmid: u32) -> Vec<String> {
        self.settled()
            .containers
            .get(&vmid)
            .map(|c| c.snapshots.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Adds a backup archive of `vmid` to `storage` (created now) and returns its volid.
    pub fn add_backup(&self, storage: &str, vmid: u32) -> String {
        let mut g = self.settled();
        g.add_backup_at(storage, vmid, now_epoch())
    }

    /// Adds a Proxmox Backup Server storage (`type` `pbs`, content `backup`): its archives
    /// are `<name>:backup/ct/<vmid>/<ISO time>`.
    pub fn add_pbs_storage(&self, name: &str) {
        let mut g = self.settled();
        g.storages.push(Storage {
            name: name.to_string(),
            kind: "pbs".into(),
            content: vec!["backup".into()],
            path: None,
            total: 2_000_000_000_000,
            used: 310_000_000_000,
            volumes: Vec::new(),
            keep_last: None,
        });
    }

    /// Sets a storage's `prune-backups keep-last` (`None`: keep all). vzdump with
    /// `remove=1` prunes to it; with `remove=0` it fails with "max backup limit" once the
    /// guest has that many unprotected backups there. `false` when there is no such storage.
    pub fn set_storage_keep_last(&self, storage: &str, keep_last: Option<u32>) -> bool {
        let mut g = self.settled();
        match g.storage_mut(storage) {
            Some(s) => {
                s.keep_last = keep_last;
                true
            }
            None => false,
        }
    }

    /// Puts an HA-managed guest into the CRM's `error` state: HA requests are queued but
    /// never carried out.
    pub fn set_ha_error(&self, vmid: u32) {
        self.settled().ha.insert(vmid, "error".to_string());
    }

    /// Puts a container under (or removes it from) the HA manager: `status/current` then
    /// has `ha.managed = 1`, and power requests become `hastart`/`hastop` tasks.
    pub fn set_ha_managed(&self, vmid: u32, managed: bool) {
        let mut g = self.settled();
        if managed {
            let state = if g.containers.get(&vmid).is_some_and(|c| c.running) {
                "started"
            } else {
                "stopped"
            };
            g.ha.insert(vmid, state.to_string());
        } else {
            g.ha.remove(&vmid);
        }
    }

    /// Makes the next vzdump deviate as `quirk` says (one shot).
    pub fn set_backup_quirk(&self, quirk: super::shared::BackupQuirk) {
        self.settled().backup_quirk = Some(quirk);
    }

    /// Adds a backup archive of `vmid` to `storage` created `age` seconds ago; returns its
    /// volid.
    pub fn add_backup_aged(&self, storage: &str, vmid: u32, age: u64) -> String {
        let mut g = self.settled();
        g.add_backup_at(storage, vmid, now_epoch().saturating_sub(age))
    }

    /// Sets or clears the container's config `lock`.
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) {
        let mut g = self.settled();
        if let Some(ct) = g.containers.get_mut(&vmid) {
            match lock {
                Some(l) => {
                    ct.config.insert("lock".into(), json!(l));
                }
                None => {
                    ct.config.remove("lock");
                }
            }
        }
    }

    /// Replaces all ACL grants of the token: `(path, privileges)`, propagating to subpaths.
    pub fn set_privileges(&self, grants: &[(&str, &[&str])]) {
        let mut g = self.lock();
        g.grants = grants
            .iter()
            .map(|(path, privs)| {
                (
                    path.to_string(),
                    privs.iter().map(|p| p.to_string()).collect(),
                )
            })
            .collect();
    }

    /// Removes one privilege on `path` (and below it) while keeping everything else.
    pub fn revoke(&self, path: &str, privilege: &str) {
        self.lock().revoke(path, privilege);
    }

    /// How long tasks started from now on run.
    pub fn set_task_duration(&self, d: Duration) {
        self.lock().task_duration = d;
    }

    /// The outcome of the next started task (only that one).
    pub fn set_next_task_outcome(&self, outcome: TaskOutcome) {
        self.lock().next_outcome = Some(outcome);
    }

    /// Adds a fault for the next `times` matching requests.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every request received so far (never the token secret).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Number of recorded requests with this method whose path contains `path_contains`.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains))
            .count()
    }

    /// UPIDs of all tasks started so far, oldest first.
    pub fn task_upids(&self) -> Vec<String> {
        self.lock().tasks.iter().map(|t| t.upid.clone()).collect()
    }

    /// Volids of the backups of `vmid` on `storage`.
    pub fn backups(&self, storage: &str, vmid: u32) -> Vec<String> {
        self.settled()
            .storage(storage)
            .map(|s| {
                s.volumes
                    .iter()
                    .filter(|v| v.content == "backup" && v.vmid == Some(vmid))
                    .map(|v| v.volid.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends every running task now (with its planned outcome), for tests that must observe
    /// the running state without depending on timing.
    pub fn complete_running_tasks(&self) {
        let mut g = self.lock();
        for t in g.tasks.iter_mut().filter(|t| t.finished.is_none()) {
            t.duration = Duration::ZERO;
        }
        g.settle();
    }

    /// Sets how much of a storage is used (bytes); a restore needing more than what is
    /// left fails inside its task the way tar reports a full disk. Returns false for an
    /// unknown storage.
    pub fn set_storage_used(&self, storage: &str, used: u64) -> bool {
        match self.lock().storage_mut(storage) {
            Some(s) => {
                s.used = used.min(s.total);
                true
            }
            None => false,
        }
    }

    /// Marks a volume protected (or not); false when there is no such volume.
    pub fn set_volume_protected(&self, volid: &str, protected: bool) -> bool {
        let mut g = self.lock();
        for s in &mut g.storages {
            if let Some(v) = s.volumes.iter_mut().find(|v| v.volid == volid) {
                v.protected = protected;
                return true;
            }
        }
        false
    }

    /// Whether any task is still running.
    pub fn tasks_running(&self) -> bool {
        self.settled().tasks.iter().any(|t| t.finished.is_none())
    }
}
