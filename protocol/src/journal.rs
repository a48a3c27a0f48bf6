//! Whether the process's stderr is the journal stream systemd connected, which both binaries
//! use to choose between journal entries with fields and plain lines on stderr.

use std::os::unix::fs::MetadataExt;

/// Whether `JOURNAL_STREAM` (`"<device>:<inode>"`, set by systemd for a service whose stderr
/// is connected to the journal) names the file behind stderr. A process that inherited the
/// variable but whose stderr was redirected elsewhere gets `false`; so does a value that is
/// not UTF-8.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    journal_stream_matches(value, meta.dev(), meta.ino())
}

/// Whether a `JOURNAL_STREAM` value (`"<device>:<inode>"`) names the file with this device
/// and inode.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("254:77", 254, 77));
        assert!(!journal_stream_matches("254:77", 254, 78));
        assert!(!journal_stream_matches("253:77", 254, 77));
        assert!(!journal_stream_matches("", 254, 77));
        assert!(!journal_stream_matches("254", 254, 77));
        assert!(!journal_stream_matches("a:b", 254, 77));
        assert!(!journal_stream_matches("254:x", 254, 77));
        assert!(!journal_stream_matches("254:77:1", 254, 77));
    }
}
