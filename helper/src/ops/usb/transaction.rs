//! One mount as a transaction: the steps a mount takes, each noted before it starts, and a
//! rollback that undoes exactly the noted steps.
//!
//! ```text
//! begin(proven device) → mount_point() → record() → activate() → verify() → commit()
//!                            └──────────── any error ───────────────┴→ rollback(cause)
//! ```
//!
//! - `mount_point`: `<mount_root>/<name>` as a plain empty directory (created if missing).
//! - `record`: what brings the mount back at boot ([`Persistence::record`]).
//! - `activate`: the mount itself: `mount -i` of the proven device by its device number
//!   (direct backend), or `daemon-reload` + `enable --now` of the unit (PID 1 mounts).
//! - `verify`: the mount table must show a mount at the mount point, of the proven device
//!   number; the disk sequence number must be the one the proof read (no other medium
//!   appeared under that number meanwhile); and the UUID, read again from the mounted
//!   device, must be the one asked for.
//!
//! A step is noted before it runs, because a step that fails or runs out of time may still
//! have done its work (a mount that completes after the deadline). The rollback runs on a
//! fresh, short deadline ([`CLEANUP_TIME`]), undoes the noted steps newest first, then reads
//! the mount table again: what is still mounted there is unmounted or, if that fails,
//! recorded, so that the helper's records, the kernel and the audit record agree.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use felhom_protocol::{FsType, HelperError, MountInfo};

use super::hostuse;
use super::mountinfo::{MountEntry, mounted_at, mounts};
use super::persist::{Managed, Persistence, mount_options};
use super::probe::{Proven, node_for, probe_filesystem};
use crate::config::{LoadedConfig, Tool};
use crate::ops::{OpEnv, io_error};

/// The fresh time a rollback and the reconciliation after it get, whatever was left of the
/// operation's own deadline.
pub const CLEANUP_TIME: Duration = Duration::from_secs(15);

/// A step of a mount, noted before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The mount point directory was created (it did not exist).
    MadeMountPoint,
    /// The unit file or record line is being written.
    Recorded,
    /// The mount (or `enable --now`) is under way.
    Activated,
}

/// Blocking work that outlived its deadline; the rollback waits for it before it undoes.
type Unfinished = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A mount in progress. See the module documentation.
pub struct MountTransaction<'e, 'a> {
    env: &'e OpEnv<'a>,
    persistence: Persistence,
    record: Managed,
    proven: Proven,
    done: Vec<Step>,
    unfinished: Option<Unfinished>,
}

impl<'e, 'a> MountTransaction<'e, 'a> {
    /// Starts the transaction for `record` on the `proven` device.
    pub fn begin(
        env: &'e OpEnv<'a>,
        persistence: Persistence,
        record: Managed,
        proven: Proven,
    ) -> Self {
        Self {
            env,
            persistence,
            record,
            proven,
            done: Vec::new(),
            unfinished: None,
        }
    }

    /// Runs blocking file work on the blocking pool within the deadline. Work that runs out
    /// of time is kept, so that the rollback can wait for it before undoing its step.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&LoadedConfig) -> Result<T, HelperError> + Send + 'static,
    ) -> Result<T, HelperError> {
        let cfg = Arc::clone(self.env.cfg);
        let mut task = tokio::task::spawn_blocking(move || f(&cfg));
        let until = self.env.deadline + crate::exec::TERM_GRACE;
        match tokio::time::timeout_at(until, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(HelperError::Internal {
                message: format!("{} failed: {e}", self.env.operation),
            }),
            Err(_) => {
                self.unfinished = Some(Box::pin(async move {
                    let _ = task.await;
                }));
                Err(HelperError::TimedOut {
                    operation: self.env.operation.to_string(),
                    after_secs: 0,
                })
            }
        }
    }

    /// Makes sure the mount point is a plain empty directory the helper may mount on.
    pub async fn mount_point(&mut self) -> Result<(), HelperError> {
        let mp = self.record.mount_point.clone();
        let made = self
            .blocking(move |cfg| prepare_mount_point(cfg, &mp))
            .await?;
        if made {
            self.done.push(Step::MadeMountPoint);
        }
        Ok(())
    }

    /// Writes the unit file or the record line.
    pub async fn record(&mut self) -> Result<(), HelperError> {
        self.done.push(Step::Recorded);
        let (p, m) = (self.persistence.clone(), self.record.clone());
        let (stable_id, device) = (self.proven.stable_id.clone(), self.proven.device.clone());
        self.blocking(move |cfg| p.record(cfg, &m, stable_id.as_deref(), &device))
            .await
    }

    /// Mounts: `mount -i` of the proven device by number, or the unit started by PID 1.
    pub async fn activate(&mut self) -> Result<(), HelperError> {
        self.done.push(Step::Activated);
        let env = self.env;
        match &self.persistence {
            Persistence::Units { .. } => {
                let unit = self.record.unit.clone().unwrap_or_default();
                env.exec_ok(Tool::Systemctl, &["daemon-reload".to_string()])
                    .await?;
                env.exec_ok(Tool::Systemctl, &["enable".into(), "--now".into(), unit])
                    .await?;
            }
            Persistence::RecordFile { .. } => {
                let source = mount_source(&self.proven)?;
                let args = [
                    "-i",
                    "-t",
                    self.record.fstype.as_str(),
                    "-o",
                    &mount_options(self.record.fstype),
                    &source,
                    &self.record.mount_point.to_string_lossy(),
                ]
                .map(String::from);
                env.exec_ok(Tool::Mount, &args).await?;
            }
        }
        Ok(())
    }

    /// Checks that what is mounted is the proven device, unchanged: device number, disk
    /// sequence number and UUID.
    pub async fn verify(&mut self) -> Result<Vec<MountEntry>, HelperError> {
        let table = self.blocking(mounts).await?;
        let mp = self.record.mount_point.display().to_string();
        let p = &self.proven;
        let Some(e) = mounted_at(&table, &self.record.mount_point) else {
            return Err(HelperError::Internal {
                message: format!(
                    "the mount of {} reported success, but nothing is mounted at {mp}",
                    p.device
                ),
            });
        };
        if !is_proven_mount(e, p, self.record.fstype) {
            return Err(HelperError::Busy {
                what: format!(
                    "{} ({}) appeared at {mp} instead of the proven {} ({})",
                    e.source, e.devno, p.device, p.devno
                ),
            });
        }
        let node = mount_source(p)?;
        if let Some(seq) = p.diskseq {
            let now = hostuse::diskseq_of(Path::new(&node));
            if now != Some((p.rdev, Some(seq))) {
                let now = now
                    .and_then(|(_, s)| s)
                    .map_or_else(|| "unreadable".to_string(), |s| s.to_string());
                return Err(HelperError::Busy {
                    what: format!(
                        "the disk under {} changed between the proof and the mount (disk \
                         sequence number {seq} then, {now} now): another medium took its \
                         place",
                        p.devno
                    ),
                });
            }
        }
        let (uuid, _) = probe_filesystem(self.env, &node).await?;
        if !uuid.eq_ignore_ascii_case(self.record.uuid.as_str()) {
            return Err(HelperError::Busy {
                what: format!(
                    "the filesystem mounted at {mp} reports UUID {uuid:?}, not {}: the disk \
                     changed between the proof and the mount",
                    self.record.uuid
                ),
            });
        }
        Ok(table)
    }

    /// Ends the transaction successfully: the reply.
    pub fn commit(self, table: &[MountEntry]) -> MountInfo {
        info(&self.persistence, &self.record, table)
    }

    /// Undoes the noted steps on a fresh deadline and returns `cause`, extended with what the
    /// cleanup found.
    pub async fn rollback(mut self, cause: HelperError) -> HelperError {
        let fresh = self
            .env
            .for_cleanup(tokio::time::Instant::now() + CLEANUP_TIME);
        if let Some(work) = self.unfinished.take() {
            let _ = tokio::time::timeout_at(fresh.deadline, work).await;
        }
        let m = &self.record;
        let mp = m.mount_point.to_string_lossy().into_owned();
        for step in self.done.iter().rev() {
            match step {
                // PID 1 takes the unit's mount down; a direct mount that is there is
                // unmounted by the reconciliation below, which reports it.
                Step::Activated => {
                    if let (Persistence::Units { .. }, Some(unit)) = (&self.persistence, &m.unit) {
                        let _ = fresh
                            .exec(
                                Tool::Systemctl,
                                &["disable".into(), "--now".into(), unit.clone()],
                            )
                            .await;
                    }
                }
                Step::Recorded => {
                    let (p, rec) = (self.persistence.clone(), m.clone());
                    let removed_unit = fresh.blocking(move |cfg| p.forget(cfg, &rec)).await;
                    // When it cannot tell, a unit may have gone: reload to be sure.
                    let is_units = matches!(self.persistence, Persistence::Units { .. });
                    if removed_unit.unwrap_or(is_units) {
                        let _ = fresh
                            .exec(Tool::Systemctl, &["daemon-reload".to_string()])
                            .await;
                    }
                }
                Step::MadeMountPoint => {}
            }
        }
        let made_dir = self.done.contains(&Step::MadeMountPoint);
        let table = match fresh.blocking(mounts).await {
            Ok(t) => t,
            Err(e) => {
                return extend(
                    cause,
                    &format!(
                        "the mount table could not be read after the rollback ({e}); check \
                         {mp} by hand"
                    ),
                );
            }
        };
        let still = |t: &[MountEntry]| mounted_at(t, &m.mount_point).is_some();
        if !still(&table) {
            if made_dir {
                let _ = std::fs::remove_dir(&m.mount_point);
            }
            return extend(cause, "rolled back: nothing is mounted there");
        }
        if fresh.cfg.has_tool(Tool::Umount) {
            let _ = fresh.exec(Tool::Umount, std::slice::from_ref(&mp)).await;
        }
        let table = fresh.blocking(mounts).await.unwrap_or(table);
        if !still(&table) {
            if made_dir {
                let _ = std::fs::remove_dir(&m.mount_point);
            }
            return extend(
                cause,
                "rolled back: the mount that appeared was unmounted again",
            );
        }
        // It cannot be taken down: record it, so that the records show what the kernel has.
        let is_ours = mounted_at(&table, &m.mount_point)
            .is_some_and(|e| is_proven_mount(e, &self.proven, m.fstype));
        let (p, rec) = (self.persistence.clone(), m.clone());
        let what = self
            .proven
            .stable_id
            .clone()
            .unwrap_or_else(|| self.proven.device.clone().into());
        let device = self.proven.device.clone();
        let kept = fresh
            .blocking(move |cfg| p.record(cfg, &rec, Some(&what), &device))
            .await
            .is_ok();
        let state = match (kept, is_ours) {
            (true, true) => format!(
                "the disk is mounted at {mp} after all and could not be unmounted; it is \
                 recorded as {:?}: remove it with usb unmount",
                m.name.as_str()
            ),
            (true, false) => format!(
                "something else is mounted at {mp} and could not be unmounted; it is recorded \
                 as {:?}: inspect it, then remove it with usb unmount",
                m.name.as_str()
            ),
            (false, _) => {
                format!("{mp} is still mounted and could not be recorded; unmount it by hand")
            }
        };
        extend(cause, &state)
    }
}

/// The reply for a managed mount, given the current mount table.
pub fn info(persistence: &Persistence, m: &Managed, table: &[MountEntry]) -> MountInfo {
    MountInfo {
        name: m.name.clone(),
        uuid: m.uuid.clone(),
        fstype: m.fstype,
        mount_point: m.mount_point.display().to_string(),
        options: mount_options(m.fstype),
        mounted: mounted_at(table, &m.mount_point).is_some(),
        backend: persistence.backend(),
        unit: m.unit.clone(),
    }
}

/// The node the direct backend mounts: `/dev/block/<major>:<minor>` or the device's own
/// node, each checked just before the mount to be the proven device number.
fn mount_source(p: &Proven) -> Result<String, HelperError> {
    if let Some(node) = node_for(p.rdev, &p.kname) {
        return Ok(node.display().to_string());
    }
    match std::fs::metadata(&p.device) {
        Ok(md) if md.rdev() == p.rdev => Ok(p.device.clone()),
        _ => Err(HelperError::Busy {
            what: format!(
                "{} is no longer the device {} that was proven; try again",
                p.device, p.devno
            ),
        }),
    }
}

/// Whether the filesystem mounted in `e` is the proven device: the same device number, or
/// (btrfs, whose mounts show an anonymous device number) a source node of that number.
fn is_proven_mount(e: &MountEntry, p: &Proven, fstype: FsType) -> bool {
    e.devno == p.devno
        || (fstype == FsType::Btrfs
            && std::fs::metadata(&e.source).is_ok_and(|md| md.rdev() == p.rdev))
}

/// Makes sure `mp` is a plain empty directory the helper may mount on; returns whether it
/// created it.
fn prepare_mount_point(cfg: &LoadedConfig, mp: &Path) -> Result<bool, HelperError> {
    // mount_root was created, trust-checked and canonicalized at start-up; it must still be
    // that directory (not a symlink put there since).
    let root = &cfg.config.mount_root;
    match std::fs::symlink_metadata(root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(HelperError::Internal {
                message: format!("{} is no longer a directory", root.display()),
            });
        }
        Err(e) => return Err(io_error(&format!("inspecting {}", root.display()), &e)),
    }
    match std::fs::symlink_metadata(mp) {
        Ok(md) if md.file_type().is_symlink() => Err(HelperError::Rejected {
            field: "mount point".into(),
            reason: format!("{} is a symbolic link", mp.display()),
        }),
        Ok(md) if !md.is_dir() => Err(HelperError::Busy {
            what: format!("{} exists and is not a directory", mp.display()),
        }),
        Ok(_) => {
            if let Some(e) = mounted_at(&mounts(cfg)?, mp) {
                return Err(HelperError::Busy {
                    what: format!(
                        "{} is already a mount point of {} ({}), not managed by felhom",
                        mp.display(),
                        e.source,
                        e.fstype
                    ),
                });
            }
            let non_empty = std::fs::read_dir(mp)
                .map_err(|e| io_error(&format!("reading {}", mp.display()), &e))?
                .next()
                .is_some();
            if non_empty {
                return Err(HelperError::Busy {
                    what: format!(
                        "{} is a non-empty directory not managed by felhom",
                        mp.display()
                    ),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(mp)
                .map_err(|e| io_error(&format!("creating {}", mp.display()), &e))?;
            Ok(true)
        }
        Err(e) => Err(io_error(&format!("inspecting {}", mp.display()), &e)),
    }
}

/// `e` with `note` appended to its text.
pub fn extend(e: HelperError, note: &str) -> HelperError {
    match e {
        HelperError::ToolFailed {
            tool,
            exit_code,
            stderr_tail,
        } => HelperError::ToolFailed {
            tool,
            exit_code,
            stderr_tail: format!("{stderr_tail} ({note})"),
        },
        HelperError::TimedOut {
            operation,
            after_secs,
        } => HelperError::Internal {
            message: format!("{operation} timed out after {after_secs} s; {note}"),
        },
        HelperError::Busy { what } => HelperError::Busy {
            what: format!("{what}; {note}"),
        },
        HelperError::Internal { message } => HelperError::Internal {
            message: format!("{message}; {note}"),
        },
        HelperError::Unavailable { what } => HelperError::Unavailable {
            what: format!("{what}; {note}"),
        },
        HelperError::NotFound { what } => HelperError::NotFound {
            what: format!("{what}; {note}"),
        },
        HelperError::Rejected { field, reason } => HelperError::Rejected {
            field,
            reason: format!("{reason}; {note}"),
        },
        other @ HelperError::VersionMismatch { .. } => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use felhom_protocol::{FsUuid, MountName};

    use super::*;
    use crate::ops::usb::persist::{unit_file, unit_name};

    fn proven(device: &str) -> Proven {
        Proven {
            device: device.into(),
            kname: "sdz1".into(),
            devno: "8:250".into(),
            rdev: libc::makedev(8, 250),
            diskseq: None,
            disk: "sdz".into(),
            stable_id: Some(PathBuf::from("/dev/disk/by-id/usb-X_Y_Z-0:0-part1")),
            fstype: FsType::Ext4,
            scan: hostuse::ScanStats::default(),
        }
    }

    /// A unit write that outlives its deadline (a hung `/etc`, say) finishes after the
    /// operation gave up; the rollback must wait for it and then remove the file, or the
    /// late write leaves a unit that mounts at the next boot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_unit_write_is_waited_for_and_removed_by_the_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("units");
        std::fs::create_dir(&units).unwrap();
        let table = dir.path().join("mountinfo");
        std::fs::write(&table, "").unwrap();
        let config = crate::config::Config {
            mount_root: dir.path().join("mnt"),
            unit_dir: units.clone(),
            mountinfo: table,
            ..Default::default()
        };
        let cfg = Arc::new(LoadedConfig {
            configured_tools: config.tools.clone(),
            config,
            agent_uid: 0,
            allowed_filesystems: vec![FsType::Ext4],
            // No tool may run in this test (systemctl would be the host's).
            missing_tools: vec![
                Tool::Pct,
                Tool::Smartctl,
                Tool::Blkid,
                Tool::Mount,
                Tool::Umount,
                Tool::Systemctl,
            ],
        });
        // Already past its deadline: the blocking step gets only TERM_GRACE.
        let env = OpEnv {
            cfg: &cfg,
            deadline: tokio::time::Instant::now(),
            operation: "usb_mount",
            cleanup: false,
        };
        let p = Persistence::of(&cfg);
        let name = MountName::new("late").unwrap();
        let uuid = FsUuid::new("ada110f6-bd6d-49db-955d-342c27627b61").unwrap();
        let record = p.managed(&name, &uuid, FsType::Ext4, dir.path().join("mnt/late"));
        let unit_path = units.join(unit_name(&record.mount_point));
        let mut tx = MountTransaction::begin(&env, p, record.clone(), proven("/dev/sdz1"));
        // The step is noted, then its write hangs past the deadline and completes late.
        tx.done.push(Step::Recorded);
        let text = unit_file(
            &name,
            &uuid,
            FsType::Ext4,
            &record.mount_point,
            Path::new("/dev/disk/by-id/usb-X_Y_Z-0:0-part1"),
        );
        let late = unit_path.clone();
        let e = tx
            .blocking(move |_| {
                std::thread::sleep(crate::exec::TERM_GRACE + Duration::from_millis(700));
                std::fs::write(&late, text).map_err(|e| io_error("writing", &e))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, HelperError::TimedOut { .. }), "{e}");
        assert!(!unit_path.exists(), "the write is still under way");
        let e = tx.rollback(e).await.to_string();
        assert!(e.contains("rolled back"), "{e}");
        // Give a write the rollback did not wait for the time to land.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !unit_path.exists(),
            "the late unit file must be gone after the rollback: {:?}",
            std::fs::read_to_string(&unit_path).ok()
        );
    }
}
