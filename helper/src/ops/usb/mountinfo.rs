//! The kernel's mount table (`/proc/self/mountinfo`), read to tell what is mounted where and
//! from which device.

use std::path::Path;

use felhom_protocol::HelperError;

use crate::config::LoadedConfig;
use crate::ops::io_error;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The device number of the mounted filesystem (`major:minor`; `0:N` for filesystems
    /// without one block device, such as btrfs).
    pub devno: String,
    /// Where it is mounted (unescaped).
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,nodev,noexec,relatime`).
    pub options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source (device).
    pub source: String,
    /// Per-superblock options (`rw,errors=remount-ro`).
    pub super_options: String,
}

/// A `major:minor` device number as `st_rdev` encodes it.
pub fn parse_devno(s: &str) -> Option<u64> {
    let (major, minor) = s.split_once(':')?;
    Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
}

/// Decodes mountinfo's octal escapes (`\040` for space, …).
pub(crate) fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            if sep < 6 || f.len() < sep + 3 {
                return None;
            }
            Some(MountEntry {
                devno: f[2].to_string(),
                mount_point: unescape_octal(f[4]),
                options: f[5].to_string(),
                fstype: f[sep + 1].to_string(),
                source: unescape_octal(f[sep + 2]),
                super_options: f.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The current mount table.
pub fn mounts(cfg: &LoadedConfig) -> Result<Vec<MountEntry>, HelperError> {
    let path = &cfg.config.mountinfo;
    // mountinfo can be long on busy hosts; read it whole (it is kernel-generated).
    let text = std::fs::read_to_string(path)
        .map_err(|e| io_error(&format!("reading {}", path.display()), &e))?;
    Ok(parse_mountinfo(&text))
}

pub(crate) fn mounted_at<'a>(table: &'a [MountEntry], mp: &Path) -> Option<&'a MountEntry> {
    let mp = mp.to_string_lossy();
    // The last entry for a path is the one visible there.
    table.iter().rev().find(|e| e.mount_point == mp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_is_parsed_and_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw\n\
                    40 20 8:17 / /mnt/felhom/a\\040b rw,nosuid,nodev,noexec,relatime - ext4 /dev/sdb1 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[1].devno, "8:17");
        assert_eq!(m[1].mount_point, "/mnt/felhom/a b");
        assert_eq!(m[1].source, "/dev/sdb1");
        assert!(m[1].options.contains("noexec"));
        assert_eq!(m[1].super_options, "rw");
        assert_eq!(parse_devno(&m[1].devno), Some(libc::makedev(8, 17)));
        assert_eq!(parse_devno("8:x"), None);
        assert_eq!(parse_devno("817"), None);
    }
}
