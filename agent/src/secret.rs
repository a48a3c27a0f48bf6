//! The API token secret, which never reaches a log, an error or a process argument.
//!
//! [`Secret`] is the only type that holds the token secret. Its `Debug` and `Display` print
//! `[redacted]`, it has no `Serialize`, and the only way to read the value is the explicit
//! [`Secret::expose`], which the HTTP layer calls once to build the (sensitive-marked)
//! `Authorization` header value.
//!
//! [`Secret::from_file`] refuses, like OpenSSH with a private key, a secret file that other
//! users could read or that the agent's (effective) user does not own — except a systemd
//! credential (a file under `$CREDENTIALS_DIRECTORY`), whose file systemd owns and
//! protects.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Placeholder printed instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret string (the Proxmox API token secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    Read {
        /// The file that was read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was empty (after trimming the trailing newline).
    #[error("secret file {path} is empty")]
    Empty {
        /// The file that was read.
        path: String,
    },
    /// The secret contains a character that cannot appear in an HTTP header or a token.
    #[error(
        "secret file {path} holds characters that are not allowed in a token secret (whitespace inside the value, '=', '%' or non-ASCII); a Proxmox API token secret is a UUID like xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    )]
    Invalid {
        /// The file that was read.
        path: String,
    },
    /// The file is open to other users (group or world permission bits) or not owned by
    /// the agent's effective user: the secret may already be known to others, so it is not
    /// used.
    #[error(
        "secret file {path} is {problem}; a token secret must be readable by the agent's user only (as OpenSSH requires of a private key). Fix: {fix}, or hand it to the agent as a systemd credential (LoadCredential=pve-token:{path}), which is exempt"
    )]
    Exposed {
        /// The file that was checked.
        path: String,
        /// What is wrong (its mode or its owner).
        problem: String,
        /// The commands that fix it.
        fix: String,
    },
}

/// Longest secret file read; a Proxmox token secret is a 36-character UUID.
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// The process's effective uid, from `/proc/self/status` (the agent links no libc
/// bindings of its own and spawns no process).
fn effective_uid() -> std::io::Result<u32> {
    let mut status = String::new();
    std::fs::File::open("/proc/self/status")?
        .take(64 * 1024)
        .read_to_string(&mut status)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| std::io::Error::other("/proc/self/status has no readable Uid: line"))
}

/// Whether `path` lies inside the systemd credentials directory (both resolved, so neither
/// `..` nor a symbolic link leads out of it).
fn is_credential(path: &Path, credentials_dir: Option<&Path>) -> bool {
    let Some(dir) = credentials_dir.filter(|d| !d.as_os_str().is_empty()) else {
        return false;
    };
    match (std::fs::canonicalize(dir), std::fs::canonicalize(path)) {
        (Ok(dir), Ok(file)) => file.starts_with(dir),
        _ => false,
    }
}

/// Why a secret file with this owner and mode must not be used, with the fix; `None` when
/// it is private to `euid`.
fn exposure(shown: &str, owner: u32, mode: u32, euid: u32) -> Option<(String, String)> {
    let open = mode & 0o077;
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if owner != euid {
        problems.push(format!(
            "owned by uid {owner}, not by the agent's user (uid {euid})"
        ));
        fixes.push(format!("chown {euid} {shown}"));
    }
    if open != 0 {
        let who = match (open & 0o070 != 0, open & 0o007 != 0) {
            (true, true) => "its group and all users",
            (true, false) => "its group",
            _ => "all users",
        };
        problems.push(format!("open to {who} (mode {:04o})", mode & 0o7777));
        fixes.push(format!("chmod 0600 {shown}"));
    }
    (!problems.is_empty()).then(|| (problems.join(" and "), fixes.join(" && ")))
}

impl Secret {
    /// Wraps a secret value. It must be non-empty printable ASCII without whitespace, `=`
    /// or `%`: Proxmox splits `PVEAPIToken=USER@REALM!TOKENID=SECRET` at the last `=`, so
    /// a secret containing one can never authenticate, and real secrets are UUIDs anyway.
    pub fn new(value: impl Into<String>) -> Option<Secret> {
        let value = value.into();
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'=' && b != b'%')
        {
            return None;
        }
        Some(Secret(value))
    }

    /// Reads a secret from a file, ignoring surrounding whitespace such as the trailing
    /// newline. The file must be owned by the process's effective user and carry no group
    /// or other permission bits ([`SecretError::Exposed`] otherwise), unless it lies under
    /// `$CREDENTIALS_DIRECTORY` (a systemd credential). The error names the file, never its
    /// content.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Secret::from_file_in(path, creds.as_deref())
    }

    /// [`Secret::from_file`] with the credentials directory given (the
    /// `$CREDENTIALS_DIRECTORY` the configuration was loaded with).
    pub fn from_file_in(
        path: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Secret, SecretError> {
        let euid = if is_credential(path, credentials_dir) {
            None
        } else {
            Some(effective_uid().map_err(|e| SecretError::Read {
                path: path.display().to_string(),
                source: std::io::Error::other(format!(
                    "cannot tell the agent's user from /proc/self/status: {e}"
                )),
            })?)
        };
        Secret::read_checked(path, euid)
    }

    /// Reads the file; with `euid`, first checks (on the opened file) that it is private to
    /// that user.
    fn read_checked(path: &Path, euid: Option<u32>) -> Result<Secret, SecretError> {
        let shown = path.display().to_string();
        let read_err = |source| SecretError::Read {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        if let Some(euid) = euid {
            let meta = file.metadata().map_err(read_err)?;
            if let Some((problem, fix)) = exposure(&shown, meta.uid(), meta.mode(), euid) {
                return Err(SecretError::Exposed {
                    path: shown.clone(),
                    problem,
                    fix,
                });
            }
        }
        let mut raw = String::new();
        file.take(MAX_SECRET_FILE_BYTES + 1)
            .read_to_string(&mut raw)
            .map_err(read_err)?;
        if raw.len() as u64 > MAX_SECRET_FILE_BYTES {
            return Err(SecretError::Invalid { path: shown });
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(SecretError::Empty { path: shown });
        }
        Secret::new(trimmed).ok_or(SecretError::Invalid { path: shown })
    }

    /// The secret value. Call this only where the value must leave the process (the HTTP
    /// `Authorization` header); never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Writes `content` to `p` with mode 0600 (the file is ours, so it passes the check).
    fn write_private(p: &Path, content: &str) {
        std::fs::write(p, content).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("0b4cf2e1-aaaa-bbbb-cccc-123456789abc").unwrap();
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "0b4cf2e1-aaaa-bbbb-cccc-123456789abc");
    }

    /// PVE splits `PVEAPIToken=ID=SECRET` at the last `=`, and `%`/whitespace do not survive
    /// the header; real secrets are UUIDs. Such values are refused up front.
    #[test]
    fn secrets_that_would_break_the_token_header_are_refused() {
        for bad in [
            "abc=def", "=abc", "abc=", "ab%3Dc", "%", "a b", "a\tb", "ä-1",
        ] {
            assert!(Secret::new(bad).is_none(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        write_private(&p, "0b4cf2e1=aaaa%bbbb\n");
        let err = Secret::from_file(&p).unwrap_err();
        assert!(matches!(err, SecretError::Invalid { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains("0b4cf2e1"), "{text}");
        assert!(text.contains('=') && text.contains('%'), "{text}");
    }

    #[test]
    fn from_file_trims_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        write_private(&p, "abc-123\n");
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc-123");
        write_private(&p, "\n");
        assert!(matches!(
            Secret::from_file(&p),
            Err(SecretError::Empty { .. })
        ));
        write_private(&p, "a b");
        let err = Secret::from_file(&p).unwrap_err();
        assert!(!err.to_string().contains("a b"));
        assert!(Secret::from_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_secret_file_open_to_others_is_refused_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        write_private(&p, "abc-123\n");
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc-123");
        for (mode, who) in [
            (0o640, "its group"),
            (0o604, "all users"),
            (0o644, "its group and all users"),
            (0o620, "its group"),
            (0o602, "all users"),
        ] {
            chmod(&p, mode);
            let err = Secret::from_file(&p).unwrap_err();
            assert!(
                matches!(err, SecretError::Exposed { .. }),
                "{mode:o}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&p.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("open to {who} (mode 0{mode:o})")),
                "{text}"
            );
            assert!(
                text.contains(&format!("chmod 0600 {}", p.display())),
                "{text}"
            );
            assert!(!text.contains("chown"), "{text}");
            assert!(!text.contains("abc-123"), "{text}");
        }
        // 0400 is as private as 0600.
        chmod(&p, 0o400);
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc-123");
    }

    #[test]
    fn a_secret_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        write_private(&p, "abc-123\n");
        let owner = std::fs::metadata(&p).unwrap().uid();
        assert!(Secret::read_checked(&p, Some(owner)).is_ok());
        // The same file, judged for an agent running as another user.
        let other = owner.wrapping_add(1);
        let err = Secret::read_checked(&p, Some(other)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SecretError::Exposed { .. }), "{err:?}");
        assert!(
            text.contains(&format!(
                "owned by uid {owner}, not by the agent's user (uid {other})"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("chown {other} {}", p.display())),
            "{text}"
        );
        assert!(!text.contains("chmod"), "{text}");
        // Both wrong: both fixes.
        chmod(&p, 0o644);
        let text = Secret::read_checked(&p, Some(other))
            .unwrap_err()
            .to_string();
        assert!(text.contains(" && chmod 0600 "), "{text}");
        // The real effective user owns what this process created.
        assert_eq!(effective_uid().unwrap(), owner);
    }

    #[test]
    fn a_systemd_credential_is_exempt_but_only_inside_its_directory() {
        let creds = tempfile::tempdir().unwrap();
        let cred = creds.path().join("pve-token");
        std::fs::write(&cred, "abc-123\n").unwrap();
        chmod(&cred, 0o644);
        assert_eq!(
            Secret::from_file_in(&cred, Some(creds.path()))
                .unwrap()
                .expose(),
            "abc-123"
        );
        // Without the credentials directory it is an ordinary file, open to others.
        assert!(matches!(
            Secret::from_file_in(&cred, None),
            Err(SecretError::Exposed { .. })
        ));
        // A file outside the directory, reached by `..` or by a link inside it, is checked.
        let outside = tempfile::tempdir().unwrap();
        let loose = outside.path().join("tok");
        std::fs::write(&loose, "abc-123\n").unwrap();
        chmod(&loose, 0o644);
        let climb = creds.path().join("..").join(
            outside
                .path()
                .strip_prefix(creds.path().parent().unwrap())
                .unwrap_or(outside.path()),
        );
        for p in [loose.clone(), climb.join("tok")] {
            assert!(
                matches!(
                    Secret::from_file_in(&p, Some(creds.path())),
                    Err(SecretError::Exposed { .. })
                ),
                "{}",
                p.display()
            );
        }
        let link = creds.path().join("link");
        std::os::unix::fs::symlink(&loose, &link).unwrap();
        assert!(matches!(
            Secret::from_file_in(&link, Some(creds.path())),
            Err(SecretError::Exposed { .. })
        ));
    }

    #[test]
    fn an_oversized_secret_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        write_private(&p, &"a".repeat(MAX_SECRET_FILE_BYTES as usize + 1));
        assert!(matches!(
            Secret::from_file(&p),
            Err(SecretError::Invalid { .. })
        ));
        write_private(&p, &"a".repeat(MAX_SECRET_FILE_BYTES as usize));
        assert!(Secret::from_file(&p).is_ok());
    }
}
