//! The API token secret, which never reaches a log, an error or a process argument.
//!
//! [`Secret`] is the only type that holds the token secret. Its `Debug` and `Display` print
//! `[redacted]`, it has no `Serialize`, and the only way to read the value is the explicit
//! [`Secret::expose`], which the HTTP layer calls once to build the (sensitive-marked)
//! `Authorization` header value.

use std::fmt;
use std::path::Path;

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

    /// Reads a secret from a file (a systemd credential or a root-owned file), ignoring
    /// surrounding whitespace such as the trailing newline. The error names the file, never
    /// its content.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let shown = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
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
    use super::*;

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
        std::fs::write(&p, "0b4cf2e1=aaaa%bbbb\n").unwrap();
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
        std::fs::write(&p, "abc-123\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc-123");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            Secret::from_file(&p),
            Err(SecretError::Empty { .. })
        ));
        std::fs::write(&p, "a b").unwrap();
        let err = Secret::from_file(&p).unwrap_err();
        assert!(!err.to_string().contains("a b"));
        assert!(Secret::from_file(&dir.path().join("missing")).is_err());
    }
}
