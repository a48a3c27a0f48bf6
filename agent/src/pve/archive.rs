//! Which archive a vzdump task wrote.
//!
//! vzdump names its target in the task log (pve-manager `PVE/VZDump.pm`):
//!
//! - file storages (dir, NFS, CIFS, …): `INFO: creating vzdump archive '<dumpdir>/<file>'`,
//!   listed by the storage as `<storage>:backup/<file>`;
//! - Proxmox Backup Server: `INFO: creating Proxmox Backup Server archive 'ct/<vmid>/<time>'`,
//!   listed as `<storage>:backup/ct/<vmid>/<time>`;
//! - a PVE 9 backup provider: `INFO: creating <provider_name> archive '<target>'`, listed as
//!   `<storage>:backup/<target>` (`VZDump.pm` `exec_backup_task`: `$archive_txt` is the
//!   provider's `provider_name()`, and the volid is `"${storeid}:backup/${volname}"` with
//!   `$volname = $task->{target}` for PBS and providers, its basename otherwise).
//!
//! The archive the log names is the archive: when the storage listing
//! (`content=backup&vmid=N`) has it as a backup of the guest, it is taken whatever its
//! `ctime` (directory storages derive `ctime` from the local-time file name —
//! pve-storage `Storage.pm` `archive_info`, `timelocal` — so a backup in the DST fall-back
//! hour is listed up to an hour before the task started). Only when the log names none,
//! the newest listed `lxc` backup of the guest created since the task started is taken:
//! compared in UTC, with one hour of tolerance for names carrying local time. An older
//! archive is never reported as the one just written.

use felhom_protocol::Vmid;

use super::args::StorageId;
use super::types::StorageContentEntry;

const FILE_MARKER: &str = "creating vzdump archive '";
const PBS_MARKER: &str = "creating Proxmox Backup Server archive '";
/// `creating <name> archive '<target>'` for any other name: a backup provider (PVE 9).
const ANY_PREFIX: &str = "creating ";
const ANY_SUFFIX: &str = " archive '";

/// How much earlier than the task's start a `ctime` derived from a local-time file name may
/// be (one DST shift), for the listing fallback.
const LOCAL_TIME_TOLERANCE: i64 = 3600;

/// Longest archive name taken from a log line; anything longer is not a vzdump target.
const MAX_TARGET_LEN: usize = 512;

/// The archive target a vzdump log names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedArchive {
    /// A file storage: the archive's file name (without the dump directory).
    File(String),
    /// A Proxmox Backup Server snapshot, `ct/<vmid>/<time>`.
    Pbs(String),
    /// A backup provider's archive (PVE 9): the provider's name and its target.
    Provider {
        /// `provider_name()` as logged.
        provider: String,
        /// The target, the volume name on the storage.
        target: String,
    },
}

impl LoggedArchive {
    /// The volume id this archive has on `storage`.
    pub fn volid(&self, storage: &StorageId) -> String {
        match self {
            LoggedArchive::File(f)
            | LoggedArchive::Pbs(f)
            | LoggedArchive::Provider { target: f, .. } => format!("{storage}:backup/{f}"),
        }
    }

    /// Whether the name belongs to `vmid` (`vzdump-lxc-<vmid>-…` or `ct/<vmid>/…`).
    fn is_of(&self, vmid: Vmid) -> bool {
        match self {
            LoggedArchive::File(f) => f.starts_with(&format!("vzdump-lxc-{vmid}-")),
            LoggedArchive::Pbs(p) => p.starts_with(&format!("ct/{vmid}/")),
            // A provider's naming is its own: the storage listing's vmid decides.
            LoggedArchive::Provider { .. } => true,
        }
    }
}

fn quoted_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.rfind('\'')?;
    let target = &rest[..end];
    (!target.is_empty()
        && target.len() <= MAX_TARGET_LEN
        && !target.chars().any(|c| c.is_control() || c == '\''))
    .then_some(target)
}

/// The archive of `vmid` named in a vzdump task log, if a line names one. Lines naming
/// another guest's archive (a multi-guest job) are skipped.
pub fn archive_from_log(lines: &[String], vmid: Vmid) -> Option<LoggedArchive> {
    lines.iter().find_map(|line| {
        let found = if let Some(path) = quoted_after(line, FILE_MARKER) {
            let file = path.rsplit('/').next().filter(|f| !f.is_empty())?;
            LoggedArchive::File(file.to_string())
        } else if let Some(snap) = quoted_after(line, PBS_MARKER) {
            if snap.split('/').count() != 3 || snap.split('/').any(str::is_empty) {
                return None;
            }
            LoggedArchive::Pbs(snap.to_string())
        } else {
            let at = line.find(ANY_PREFIX)?;
            let rest = &line[at + ANY_PREFIX.len()..];
            let name_end = rest.find(ANY_SUFFIX)?;
            let provider = &rest[..name_end];
            if provider.is_empty()
                || provider.len() > 128
                || provider.chars().any(|c| c.is_control() || c == '\'')
            {
                return None;
            }
            let target = quoted_after(rest, ANY_SUFFIX)?;
            LoggedArchive::Provider {
                provider: provider.to_string(),
                target: target.to_string(),
            }
        };
        found.is_of(vmid).then_some(found)
    })
}

/// Where the reported archive's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveSource {
    /// The task log named it and the storage lists it.
    TaskLog,
    /// The task log named none; it is the newest qualifying backup in the listing.
    Listing,
}

impl ArchiveSource {
    /// `task-log` or `listing` (for JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveSource::TaskLog => "task-log",
            ArchiveSource::Listing => "listing",
        }
    }
}

/// The archive a backup task wrote, confirmed by the storage listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundArchive {
    /// Volume id, usable as a restore source.
    pub volid: String,
    /// Where the id came from.
    pub source: ArchiveSource,
    /// `ctime` from the listing.
    pub ctime: i64,
}

/// Why no archive could be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveProblem {
    /// The log names an archive the listing does not have.
    #[error("the task log names {volid}, but storage {storage} does not list it")]
    LoggedMissing {
        /// The named archive.
        volid: String,
        /// The storage.
        storage: String,
    },
    /// The log names an archive whose listing entry fails a check.
    #[error("the task log names {volid}, but the storage lists it {why}")]
    LoggedMismatch {
        /// The named archive.
        volid: String,
        /// What does not fit.
        why: String,
    },
    /// No line in the log, and no backup in the listing passes the checks.
    #[error(
        "the task log names no archive and storage {storage} lists no lxc backup of CT {vmid} created since the task started{}",
        older.as_ref().map(|o| format!(" (the newest there, {o}, is older: not the one just written)")).unwrap_or_default()
    )]
    NothingNew {
        /// The storage.
        storage: String,
        /// The guest.
        vmid: Vmid,
        /// The newest listed backup of the guest, older than the task.
        older: Option<String>,
    },
}

/// Why the listed `e`, named by the task log, is not a backup of `vmid`, or `None` when it
/// is one. Its `ctime` does not matter: the log named it.
fn not_of_guest(e: &StorageContentEntry, vmid: Vmid) -> Option<String> {
    match e.vmid {
        Some(v) if v == vmid => {}
        Some(v) => return Some(format!("as a backup of CT {v}")),
        None => return Some("without a guest id".into()),
    }
    match e.subtype.as_deref() {
        Some("lxc") | None => None,
        Some(other) => Some(format!("with subtype {other}, not lxc")),
    }
}

/// Whether a file name carries vzdump's local-time stamp (`…-YYYY_MM_DD-HH_MM_SS.…`), from
/// which directory storages derive `ctime` with `timelocal`.
fn local_time_name(volid: &str) -> bool {
    let file = volid.rsplit('/').next().unwrap_or(volid);
    file.starts_with("vzdump-")
        && file.split('-').any(|part| {
            let b = part.as_bytes();
            b.len() >= 10 && b[4] == b'_' && b[7] == b'_' && b[..4].iter().all(u8::is_ascii_digit)
        })
}

/// Why `e` is not a fresh lxc backup of `vmid` (the listing fallback), or `None` when it is
/// one: it must be an `lxc` backup of the guest with a `ctime` not before the task's start
/// (one hour earlier allowed for local-time-derived names, a DST fall-back).
fn disqualified(e: &StorageContentEntry, vmid: Vmid, task_start: i64) -> Option<String> {
    if e.vmid.is_some_and(|v| v != vmid) {
        return Some(format!(
            "as a backup of CT {}",
            e.vmid.map(|v| v.to_string()).unwrap_or_default()
        ));
    }
    match e.subtype.as_deref() {
        Some("lxc") => {}
        Some(other) => return Some(format!("with subtype {other}, not lxc")),
        None => return Some("without a subtype (not an lxc backup)".into()),
    }
    let tolerance = if local_time_name(&e.volid) {
        LOCAL_TIME_TOLERANCE
    } else {
        0
    };
    match e.ctime {
        Some(t) if t >= task_start - tolerance => None,
        Some(t) => Some(format!(
            "with ctime {t}, before the task started ({task_start})"
        )),
        None => Some("without a ctime".into()),
    }
}

/// Chooses the archive a backup of `vmid` to `storage` wrote. `logged` is what
/// [`archive_from_log`] found, `listing` the storage's backup content (of this guest or
/// all), `task_start` the task's start time (the UPID's, epoch seconds).
pub fn choose_archive(
    logged: Option<&LoggedArchive>,
    listing: &[StorageContentEntry],
    storage: &StorageId,
    vmid: Vmid,
    task_start: i64,
) -> Result<FoundArchive, ArchiveProblem> {
    if let Some(l) = logged {
        let volid = l.volid(storage);
        let Some(entry) = listing.iter().find(|e| e.volid == volid) else {
            return Err(ArchiveProblem::LoggedMissing {
                volid,
                storage: storage.to_string(),
            });
        };
        if let Some(why) = not_of_guest(entry, vmid) {
            return Err(ArchiveProblem::LoggedMismatch { volid, why });
        }
        return Ok(FoundArchive {
            volid,
            source: ArchiveSource::TaskLog,
            ctime: entry.ctime.unwrap_or_default(),
        });
    }
    let mine = || listing.iter().filter(|e| e.vmid == Some(vmid));
    if let Some(e) = mine()
        .filter(|e| disqualified(e, vmid, task_start).is_none())
        .max_by_key(|e| e.ctime)
    {
        return Ok(FoundArchive {
            volid: e.volid.clone(),
            source: ArchiveSource::Listing,
            ctime: e.ctime.unwrap_or_default(),
        });
    }
    Err(ArchiveProblem::NothingNew {
        storage: storage.to_string(),
        vmid,
        older: mine().max_by_key(|e| e.ctime).map(|e| e.volid.clone()),
    })
}

/// The guest an archive name belongs to: `vzdump-lxc-<vmid>-…` (file storages) or
/// `ct/<vmid>/…` (PBS), after the `<storage>:backup/` prefix. `None` for other names.
pub fn archive_vmid(volid: &str) -> Option<Vmid> {
    let name = volid.split_once(":backup/").map_or(volid, |(_, n)| n);
    let digits = if let Some(rest) = name.strip_prefix("ct/") {
        rest.split('/').next()?
    } else {
        let file = name.rsplit('/').next()?;
        file.strip_prefix("vzdump-lxc-")?.split('-').next()?
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmid(n: u32) -> Vmid {
        n.to_string().parse().unwrap()
    }

    fn entry(volid: &str, owner: u32, ctime: i64, subtype: &str) -> StorageContentEntry {
        StorageContentEntry {
            volid: volid.into(),
            content: "backup".into(),
            format: "tar.zst".into(),
            size: Some(1),
            ctime: Some(ctime),
            vmid: Some(vmid(owner)),
            notes: None,
            protected: false,
            subtype: Some(subtype.into()),
            approximate_size: None,
            used: None,
            parent: None,
            encrypted: None,
            verification: None,
        }
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn file_and_pbs_lines_give_volids() {
        let st: StorageId = "local".parse().unwrap();
        let log = lines(&[
            "INFO: starting new backup job: vzdump 101 --storage local",
            "INFO: creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-101-2024_01_31-12_00_00.tar.zst'",
        ]);
        let a = archive_from_log(&log, vmid(101)).unwrap();
        assert_eq!(
            a.volid(&st),
            "local:backup/vzdump-lxc-101-2024_01_31-12_00_00.tar.zst"
        );
        let pbs: StorageId = "pbs".parse().unwrap();
        let log =
            lines(&["INFO: creating Proxmox Backup Server archive 'ct/101/2024-01-31T11:00:00Z'"]);
        let a = archive_from_log(&log, vmid(101)).unwrap();
        assert_eq!(a.volid(&pbs), "pbs:backup/ct/101/2024-01-31T11:00:00Z");
        // Another guest's line, or no line: nothing.
        assert_eq!(archive_from_log(&log, vmid(102)), None);
        assert_eq!(
            archive_from_log(&lines(&["INFO: status = running"]), vmid(101)),
            None
        );
        assert_eq!(
            archive_from_log(&lines(&["creating vzdump archive ''"]), vmid(101)),
            None
        );
    }

    #[test]
    fn an_older_archive_is_never_the_new_one() {
        let st: StorageId = "local".parse().unwrap();
        let old = entry("local:backup/vzdump-lxc-101-old.tar.zst", 101, 100, "lxc");
        // No log line, only an older archive: nothing qualifies, and the old one is named.
        let err =
            choose_archive(None, std::slice::from_ref(&old), &st, vmid(101), 200).unwrap_err();
        assert!(
            matches!(&err, ArchiveProblem::NothingNew { older: Some(o), .. } if o == &old.volid),
            "{err:?}"
        );
        // The log names a file the listing lacks: no fallback to the old one.
        let logged = LoggedArchive::File("vzdump-lxc-101-new.tar.zst".into());
        let err = choose_archive(
            Some(&logged),
            std::slice::from_ref(&old),
            &st,
            vmid(101),
            200,
        )
        .unwrap_err();
        assert!(
            matches!(err, ArchiveProblem::LoggedMissing { .. }),
            "{err:?}"
        );
        // Named by the log but listed as another guest's: refused.
        let other = entry("local:backup/vzdump-lxc-101-new.tar.zst", 102, 250, "lxc");
        let err = choose_archive(Some(&logged), &[other], &st, vmid(101), 200).unwrap_err();
        assert!(
            matches!(err, ArchiveProblem::LoggedMismatch { .. }),
            "{err:?}"
        );
        // A qemu backup with the same owner does not count.
        let qemu = entry("local:backup/vzdump-qemu-101-x.vma.zst", 101, 300, "qemu");
        assert!(choose_archive(None, &[old.clone(), qemu], &st, vmid(101), 200).is_err());
        // The fresh one from the listing is taken when the log names none.
        let fresh = entry("local:backup/vzdump-lxc-101-new.tar.zst", 101, 250, "lxc");
        let found = choose_archive(None, &[old, fresh.clone()], &st, vmid(101), 200).unwrap();
        assert_eq!(found.volid, fresh.volid);
        assert_eq!(found.source, ArchiveSource::Listing);
        let found = choose_archive(Some(&logged), &[fresh], &st, vmid(101), 200).unwrap();
        assert_eq!(found.source, ArchiveSource::TaskLog);
    }

    #[test]
    fn without_a_log_line_the_newest_fresh_archive_is_taken() {
        let st: StorageId = "local".parse().unwrap();
        let older = entry("local:backup/vzdump-lxc-101-a.tar.zst", 101, 250, "lxc");
        let newer = entry("local:backup/vzdump-lxc-101-b.tar.zst", 101, 300, "lxc");
        let stale = entry("local:backup/vzdump-lxc-101-c.tar.zst", 101, 100, "lxc");
        // Both were created since the task started; the listing's order does not matter.
        for listing in [
            vec![older.clone(), newer.clone(), stale.clone()],
            vec![newer.clone(), stale.clone(), older.clone()],
        ] {
            let found = choose_archive(None, &listing, &st, vmid(101), 200).unwrap();
            assert_eq!(found.volid, newer.volid, "{listing:?}");
            assert_eq!(found.ctime, 300);
            assert_eq!(found.source, ArchiveSource::Listing);
        }
        // Nothing fresh: the newest of the old ones is the one named as older.
        let older_still = entry("local:backup/vzdump-lxc-101-d.tar.zst", 101, 50, "lxc");
        let err =
            choose_archive(None, &[older_still, stale.clone()], &st, vmid(101), 200).unwrap_err();
        assert!(
            matches!(&err, ArchiveProblem::NothingNew { older: Some(o), .. } if o == &stale.volid),
            "{err:?}"
        );
    }

    #[test]
    fn another_guests_archive_is_never_reported() {
        let st: StorageId = "local".parse().unwrap();
        // The log names CT 101's file, but the storage lists that volume as CT 102's.
        let logged = LoggedArchive::File("vzdump-lxc-101-new.tar.zst".into());
        let theirs = entry("local:backup/vzdump-lxc-101-new.tar.zst", 102, 250, "lxc");
        let err = choose_archive(Some(&logged), &[theirs], &st, vmid(101), 200).unwrap_err();
        assert!(
            matches!(&err, ArchiveProblem::LoggedMismatch { why, .. } if why == "as a backup of CT 102"),
            "{err:?}"
        );
        // No log line: newer fresh archives of another guest, or of no guest, are passed
        // over for this guest's own.
        let other = entry("local:backup/vzdump-lxc-102-x.tar.zst", 102, 400, "lxc");
        let mut ownerless = entry("local:backup/vzdump-lxc-101-y.tar.zst", 101, 500, "lxc");
        ownerless.vmid = None;
        let mine = entry("local:backup/vzdump-lxc-101-z.tar.zst", 101, 250, "lxc");
        let found = choose_archive(
            None,
            &[other.clone(), ownerless.clone(), mine.clone()],
            &st,
            vmid(101),
            200,
        )
        .unwrap();
        assert_eq!(found.volid, mine.volid);
        // Only others' archives: nothing is found, and none is named as this guest's.
        let err = choose_archive(None, &[other, ownerless], &st, vmid(101), 200).unwrap_err();
        assert!(
            matches!(&err, ArchiveProblem::NothingNew { older: None, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn archive_vmid_reads_both_forms() {
        assert_eq!(
            archive_vmid("local:backup/vzdump-lxc-101-2024_01_31-12_00_00.tar.zst"),
            Some(vmid(101))
        );
        assert_eq!(
            archive_vmid("pbs:backup/ct/7001/2024-01-31T11:00:00Z"),
            Some(vmid(7001))
        );
        assert_eq!(archive_vmid("local:backup/vzdump-qemu-101-x.vma"), None);
        assert_eq!(archive_vmid("local:vztmpl/debian.tar.zst"), None);
        assert_eq!(archive_vmid("nfs:backup/vzdump-lxc--x.tar"), None);
    }

    #[test]
    fn a_log_line_naming_no_plausible_archive_is_ignored() {
        let long = format!("vzdump-lxc-101-{}.tar", "x".repeat(MAX_TARGET_LEN));
        for bad in [
            // Longer than any vzdump target.
            format!("INFO: creating vzdump archive '/var/lib/vz/dump/{long}'"),
            // A control character or a quote inside the name.
            "INFO: creating vzdump archive '/d/vzdump-lxc-101-a\u{7}b.tar'".to_string(),
            "INFO: creating vzdump archive '/d/vzdump-lxc-101-a'b.tar'".to_string(),
            // A PBS snapshot that is not `ct/<vmid>/<time>`.
            "INFO: creating Proxmox Backup Server archive 'ct/101/'".to_string(),
            "INFO: creating Proxmox Backup Server archive 'ct/101/a/b'".to_string(),
        ] {
            assert_eq!(archive_from_log(&lines(&[&bad]), vmid(101)), None, "{bad}");
        }
        // At the bound it is taken.
        let at = format!("vzdump-lxc-101-{}.tar", "x".repeat(MAX_TARGET_LEN - 22));
        let line = format!("INFO: creating vzdump archive '/d/{at}'");
        assert_eq!(line.len() - line.find("'/").unwrap() - 2, MAX_TARGET_LEN);
        assert_eq!(
            archive_from_log(&lines(&[&line]), vmid(101)),
            Some(LoggedArchive::File(at))
        );
    }

    /// A backup written in the DST fall-back hour: the directory storage derives its
    /// `ctime` from the local-time name (pve-storage `Storage.pm` `archive_info`,
    /// `timelocal`), an hour before the task's start. Named by the log: taken, ctime as
    /// listed. From the listing alone: within the one-hour tolerance for such names only.
    #[test]
    fn the_logged_archive_is_taken_whatever_its_ctime() {
        let st: StorageId = "local".parse().unwrap();
        let name = "vzdump-lxc-101-2026_10_25-02_30_00.tar.zst";
        let start = 1_792_888_200; // 2026-10-25 00:30:00 UTC (02:30 CEST)
        let listed = entry(
            &format!("local:backup/{name}"),
            101,
            start - 3600 + 5,
            "lxc",
        );
        let logged = LoggedArchive::File(name.into());
        let found = choose_archive(
            Some(&logged),
            std::slice::from_ref(&listed),
            &st,
            vmid(101),
            start,
        )
        .unwrap();
        assert_eq!(found.source, ArchiveSource::TaskLog);
        assert_eq!(found.ctime, start - 3600 + 5);
        let found =
            choose_archive(None, std::slice::from_ref(&listed), &st, vmid(101), start).unwrap();
        assert_eq!(found.source, ArchiveSource::Listing);
        // Beyond the tolerance, or a UTC-named (PBS) snapshot before the start: not new.
        let older = entry(&format!("local:backup/{name}"), 101, start - 3601, "lxc");
        assert!(choose_archive(None, &[older], &st, vmid(101), start).is_err());
        let pbs = entry(
            "pbs:backup/ct/101/2026-10-25T00:29:00Z",
            101,
            start - 60,
            "lxc",
        );
        assert!(choose_archive(None, &[pbs], &st, vmid(101), start).is_err());
    }

    /// PVE 9's backup-provider line (pve-manager `VZDump.pm` `exec_backup_task`:
    /// `creating $archive_txt archive '$task->{target}'` with the provider's name).
    #[test]
    fn the_backup_provider_line_is_recognised() {
        let st: StorageId = "ext".parse().unwrap();
        let log = lines(&[
            "INFO: creating Example Backup Provider archive 'example-ct-101-2026-10-25T00:30:00Z'",
        ]);
        let a = archive_from_log(&log, vmid(101)).unwrap();
        assert_eq!(
            a,
            LoggedArchive::Provider {
                provider: "Example Backup Provider".into(),
                target: "example-ct-101-2026-10-25T00:30:00Z".into()
            }
        );
        assert_eq!(
            a.volid(&st),
            "ext:backup/example-ct-101-2026-10-25T00:30:00Z"
        );
    }
}
