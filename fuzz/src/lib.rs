//! The bodies of the fuzz targets. Each `fuzz_targets/NAME.rs` calls the function of the same
//! name; `tests/tests/repo/fuzz_corpus.rs` includes this file and replays every committed seed
//! and every past crash (`fuzz/regressions/NAME/`) through the same functions in the normal
//! test suite, so a crash found once stays a failing test until it is fixed.
//!
//! A target must never panic on any input: a panic is a finding. The `assert!`s below are the
//! properties checked on top of "does not crash" (round trips, allowlist invariants, bounded
//! and control-free text).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::OnceLock;

use bytes::BytesMut;
use felhom_protocol::transport::{
    self, MAX_REPLY_FRAME, MAX_REQUEST_FRAME, WireCodec, server_frame_codec, server_wire_codec,
};
use tarpc::tokio_serde::{Deserializer, Serializer};
use tarpc::tokio_util::codec::Decoder;

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target: name and body, in the order the regression test uses.
pub const TARGETS: &[(&str, Target)] = &[
    ("helper_request_frame", helper_request_frame),
    ("protocol_newtypes", protocol_newtypes),
    ("pve_responses", pve_responses),
    ("upid_roundtrip", upid_roundtrip),
    ("pve_error_text", pve_error_text),
    ("smart_summary", smart_summary),
    ("helper_config", helper_config),
    ("agent_config", agent_config),
    ("set_config_args", set_config_args),
    ("cert_not_after", cert_not_after),
];

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// Sets the directory the config targets write their one scratch file into (default:
/// `target/fuzz-scratch` under the current directory). Call before the first input.
pub fn set_scratch_dir(dir: PathBuf) {
    let _ = SCRATCH.set(dir);
}

/// The scratch file for one config target, in a private directory (mode 0700) so the
/// helper's ownership and mode checks accept it.
fn scratch_file(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = SCRATCH.get_or_init(|| {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("."))
            .join("target")
            .join("fuzz-scratch")
    });
    let dir = dir.join(format!("{}", std::process::id()));
    if !dir.exists() {
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod the scratch directory");
    }
    dir.join(name)
}

fn write_scratch(name: &str, data: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch_file(name);
    std::fs::write(&path, data).expect("write the scratch file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the scratch file");
    path
}

/// True when `s` is safe to show on a terminal or in a log line: no control characters
/// (C0, DEL, C1), so no escape sequence.
pub fn is_clean_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The helper's server-side decoding of a byte stream: the helper's framing (length prefix,
/// request frame limit) and codec (bincode limit, deadline check), through serde's
/// validating constructors to a typed request. Whatever is accepted re-encodes (with the
/// agent's codec) and decodes again to the same request.
pub fn helper_request_frame(data: &[u8]) {
    let mut frames = server_frame_codec();
    let mut wire = server_wire_codec();
    let mut client = WireCodec::<
        tarpc::Response<felhom_protocol::HelperResponse>,
        tarpc::ClientMessage<felhom_protocol::HelperRequest>,
    >::new(MAX_REPLY_FRAME, MAX_REQUEST_FRAME);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        assert!(frame.len() <= MAX_REQUEST_FRAME, "frame over the limit");
        let Ok(msg) = Pin::new(&mut wire).deserialize(&frame) else {
            continue;
        };
        if let tarpc::ClientMessage::Request(req) = &msg {
            // The deadline check let it through, so it is within the helper's bound.
            let left = req
                .context
                .deadline
                .saturating_duration_since(std::time::Instant::now());
            assert!(left.as_secs() <= transport::MAX_DEADLINE_SECS + 1);
        }
        let bytes = Pin::new(&mut client)
            .serialize(&msg)
            .expect("an accepted request re-encodes");
        let again = Pin::new(&mut wire)
            .deserialize(&BytesMut::from(&bytes[..]))
            .expect("a re-encoded request decodes");
        match (&msg, &again) {
            (tarpc::ClientMessage::Request(a), tarpc::ClientMessage::Request(b)) => {
                assert_eq!(a.id, b.id);
                assert_eq!(format!("{:?}", a.message), format!("{:?}", b.message));
            }
            (
                tarpc::ClientMessage::Cancel { request_id: a, .. },
                tarpc::ClientMessage::Cancel { request_id: b, .. },
            ) => assert_eq!(a, b),
            _ => panic!("message kind changed in a round trip"),
        }
    }
}

/// Round trip through the wire codec, and the agreement between the constructor and the
/// decoder: an accepted value decodes back equal; a refused string is refused by the decoder
/// too.
fn newtype_string<T>(s: &str, new: fn(&str) -> Result<T, felhom_protocol::ValidationError>)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + AsRef<str>,
{
    let mut codec = WireCodec::<T, T>::new(MAX_REQUEST_FRAME, MAX_REQUEST_FRAME);
    let mut raw = WireCodec::<String, String>::new(MAX_REQUEST_FRAME, MAX_REQUEST_FRAME);
    let Ok(raw_bytes) = Pin::new(&mut raw).serialize(&s.to_string()) else {
        return; // longer than a request frame: cannot arrive
    };
    let decoded = Pin::new(&mut codec).deserialize(&BytesMut::from(&raw_bytes[..]));
    match new(s) {
        Ok(v) => {
            // A constructor may only normalize (FsUuid upper-cases hex): the normal form is
            // accepted as it is and means the same value.
            let canon = v.as_ref();
            assert!(
                canon.eq_ignore_ascii_case(s),
                "rewrote {s:?} into {canon:?}"
            );
            assert_eq!(new(canon).expect("the normal form is accepted"), v);
            assert!(is_clean_text(s), "accepted a control character: {s:?}");
            let bytes = Pin::new(&mut codec).serialize(&v).expect("encodes");
            let back = Pin::new(&mut codec)
                .deserialize(&BytesMut::from(&bytes[..]))
                .expect("decodes");
            assert_eq!(back, v);
            assert_eq!(decoded.expect("the decoder accepts it too"), v);
        }
        Err(e) => {
            assert!(
                decoded.is_err(),
                "the decoder accepted what the constructor refused"
            );
            assert!(is_clean_text(&e.to_string()) || !is_clean_text(s));
        }
    }
}

fn newtype_u32<T>(n: u32, new: fn(u32) -> Result<T, felhom_protocol::ValidationError>)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut codec = WireCodec::<T, T>::new(64, 64);
    let mut raw = WireCodec::<u32, u32>::new(64, 64);
    let raw_bytes = Pin::new(&mut raw).serialize(&n).expect("encodes");
    let decoded = Pin::new(&mut codec).deserialize(&BytesMut::from(&raw_bytes[..]));
    match new(n) {
        Ok(v) => {
            let bytes = Pin::new(&mut codec).serialize(&v).expect("encodes");
            let back = Pin::new(&mut codec)
                .deserialize(&BytesMut::from(&bytes[..]))
                .expect("decodes");
            assert_eq!(back, v);
            assert_eq!(decoded.expect("the decoder accepts it too"), v);
        }
        Err(_) => assert!(decoded.is_err()),
    }
}

/// Every protocol newtype's constructor: the first byte picks the type, the rest is the value.
pub fn protocol_newtypes(data: &[u8]) {
    use felhom_protocol as p;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let n = rest
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 11 {
        0 => newtype_string(s, p::StorageId::new),
        1 => {
            newtype_string(s, p::TemplateVolid::new);
            if p::TemplateVolid::new(s).is_ok() {
                assert!(s.contains(":vztmpl/"), "a template outside vztmpl: {s:?}");
                assert!(
                    !s.split('/').any(|c| c == ".."),
                    "template with '..': {s:?}"
                );
            }
        }
        2 => newtype_string(s, p::Hostname::new),
        3 => newtype_string(s, p::Bridge::new),
        4 => {
            newtype_string(s, p::FsUuid::new);
        }
        5 => {
            newtype_string(s, p::MountName::new);
            if p::MountName::new(s).is_ok() {
                // The last component of a mount point: never a path, never `.` or `..`.
                assert!(!s.contains('/') && !s.contains(".."), "mount name {s:?}");
                assert!(s != ".", "mount name {s:?}");
            }
        }
        6 => {
            newtype_string(s, p::DiskName::new);
            if p::DiskName::new(s).is_ok() {
                // A name in /sys/block and /dev: never a path, never `.` or `..`.
                assert!(!s.contains('/') && !s.contains(".."), "disk name {s:?}");
                assert!(s != ".", "disk name {s:?}");
            }
        }
        7 => n.into_iter().for_each(|n| newtype_u32(n, p::Vmid::new)),
        8 => n
            .into_iter()
            .for_each(|n| newtype_u32(n, p::RootfsGib::new)),
        9 => n
            .into_iter()
            .for_each(|n| newtype_u32(n, p::MemoryMib::new)),
        _ => n.into_iter().for_each(|n| newtype_u32(n, p::Cores::new)),
    }
    // FromStr of the numeric types (`pct` and the CLI take them as text).
    let _ = s.parse::<p::Vmid>();
    let _ = s.parse::<p::Cores>();
}

/// The agent's decoding of each Proxmox response type through the lenient wire types: the
/// first byte picks the type, the rest is the `data` JSON.
pub fn pve_responses(data: &[u8]) {
    use felhom_agent::pve::*;
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    fn try_decode<T: serde::de::DeserializeOwned + serde::Serialize>(json: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<T>(json) {
            // What was decoded can be shown (`--json`).
            let _ = serde_json::to_string(&v).expect("a decoded value serializes");
        }
    }
    match which % 14 {
        0 => try_decode::<VersionInfo>(json),
        1 => try_decode::<Vec<NodeEntry>>(json),
        2 => try_decode::<NodeStatus>(json),
        3 => try_decode::<Vec<ContainerStatus>>(json),
        4 => try_decode::<ContainerStatus>(json),
        5 => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) {
                if let Ok(c) = ContainerConfig::from_value(v) {
                    let _ = c.hostname();
                }
            }
        }
        6 => try_decode::<Vec<SnapshotEntry>>(json),
        7 => try_decode::<Vec<StorageEntry>>(json),
        8 => try_decode::<Vec<StorageContentEntry>>(json),
        9 => try_decode::<TaskStatus>(json),
        10 => try_decode::<Vec<TaskLogLine>>(json),
        11 => try_decode::<Vec<ClusterResource>>(json),
        12 => try_decode::<Vec<ClusterStatusEntry>>(json),
        _ => {
            if let Ok(p) = serde_json::from_slice::<Permissions>(json) {
                let _ = p.has("/", "VM.Audit");
            }
        }
    }
}

/// `Upid`: whatever parses prints back to the same text and parses again equal.
pub fn upid_roundtrip(data: &[u8]) {
    use felhom_agent::pve::Upid;
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = s.parse::<Upid>() {
        let printed = u.to_string();
        assert_eq!(printed, s, "print is not the parsed text");
        let again: Upid = printed.parse().expect("printed UPID parses");
        assert_eq!(again, u);
        assert_eq!(again.node(), u.node());
        assert_eq!(again.task_type(), u.task_type());
        let _ = (
            u.pid(),
            u.pstart(),
            u.starttime(),
            u.id(),
            u.user(),
            u.token_name(),
        );
    }
}

/// Error classification from status, reason phrase and body; the 403 privilege and lock
/// parsers; task failure text. Layout: 2 bytes status, 1 byte flags, 2 bytes reason length,
/// reason, body. Every message that can reach a terminal or a log is bounded and free of
/// control characters.
pub fn pve_error_text(data: &[u8]) {
    use felhom_agent::pve::error::{classify, parse_lock, parse_permission_check};
    use felhom_agent::pve::{PveError, TaskFailure, TaskLogLine, Upid};
    if data.len() < 5 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 1000;
    let idempotent = data[2] & 1 == 1;
    let reason_len = usize::from(u16::from_le_bytes([data[3], data[4]]));
    let rest = &data[5..];
    let (reason, body) = rest.split_at(reason_len.min(rest.len()));
    let reason = String::from_utf8_lossy(reason);
    let reason = (data[2] & 2 == 0).then_some(&*reason);
    let err = classify("GET", "/nodes/pve/status", status, reason, body, idempotent);
    let text = err.to_string();
    assert!(is_clean_text(&text), "control characters in {text:?}");
    assert!(
        text.len() <= 16 * 1024,
        "unbounded error text ({} bytes)",
        text.len()
    );
    let _ = (err.is_no_such_task(), err.is_retryable_read());
    if let PveError::Forbidden {
        path, privilege, ..
    } = &err
    {
        if let Some(p) = privilege {
            assert!(!p.contains(' '));
        }
        if let Some(p) = path {
            assert!(p.starts_with('/'));
        }
    }
    let body_text = String::from_utf8_lossy(body);
    let _ = parse_permission_check(&body_text);
    let _ = parse_lock(&body_text);
    // Task-log interpretation: the lines of a failed task's log as Proxmox sends them.
    if let Ok(lines) = serde_json::from_slice::<Vec<TaskLogLine>>(body) {
        let upid: Upid = "UPID:pve:0000A1B2:00C0FFEE:65A1B2C3:vzdump:100:felhom@pve!agent:"
            .parse()
            .expect("a valid UPID");
        let mut digest = felhom_agent::pve::tasklog::LogDigest::new(5);
        let log_tail: Vec<String> = lines.iter().map(|l| digest.push(&l.t)).collect();
        let failure = TaskFailure {
            upid,
            task_type: "vzdump".into(),
            id: "100".into(),
            exitstatus: reason.unwrap_or("job errors").to_string(),
            reasons: digest.errors().lines().to_vec(),
            reasons_omitted: digest.errors().omitted(),
            log_tail,
            privilege: None,
        };
        let _ = failure.to_string();
    }
}

/// smartctl JSON summary: first byte is the process exit status, the rest smartctl's JSON.
pub fn smart_summary(data: &[u8]) {
    let Some((&exit, json)) = data.split_first() else {
        return;
    };
    let _ = felhom_agent::smart::explain_exit_status(exit);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) {
        let s = felhom_agent::smart::summarize_value("sda".into(), None, exit, &v);
        let _ = serde_json::to_string(&s).expect("a summary serializes");
    }
}

/// The helper's configuration file: read, parsed and validated as at start-up.
pub fn helper_config(data: &[u8]) {
    let path = write_scratch("helper.json", data);
    let _ = felhom_helper::config::load(&path);
}

/// The agent's configuration: the JSON file (the input) with an empty environment.
pub fn agent_config(data: &[u8]) {
    use felhom_agent::config::AgentConfig;
    let path = write_scratch("agent.json", data);
    let env = |_: &str| None;
    if let Ok(c) = AgentConfig::load_with_env(Some(&path), &env) {
        let _ = c.api_settings();
    }
    let _ = AgentConfig::load_helper_socket_with_env(Some(&path), &env);
}

/// `set-config KEY=VALUE` arguments (one a line), parsed as the CLI does: the key through
/// the allowlist, the value through its check. Whatever is accepted is a key of the
/// allowlist, never a bind mount (host path), never a control character.
pub fn set_config_args(data: &[u8]) {
    use felhom_agent::pve::{ConfigChange, ConfigKey};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut change = ConfigChange::new();
    for arg in text.split('\n') {
        let Some((k, v)) = arg.split_once('=') else {
            continue;
        };
        let Ok(key) = k.parse::<ConfigKey>() else {
            continue;
        };
        // The key's canonical name is the text given: no aliases, no padding.
        assert_eq!(key.name(), k);
        assert!(!k.starts_with("lxc") && !k.starts_with("dev") && k != "features");
        if key.check_value(v).is_ok() {
            assert!(is_clean_text(v), "accepted a control character");
            assert!(v.len() <= 4096);
            if let ConfigKey::Mp(_) = key {
                // Proxmox's `[volume=]<volume>,mp=<path>,…`: the volume is the first option
                // when it has no `=`, or the value of `volume=`; a host path there is a bind
                // mount. (An option with an unknown key is refused by Proxmox itself.)
                let first = v.split(',').next().unwrap_or("").trim();
                if !first.contains('=') {
                    assert!(!first.starts_with('/'), "accepted a bind mount: {v:?}");
                }
                for opt in v.split(',') {
                    if let Some((ok, ov)) = opt.split_once('=') {
                        if ok.trim() == "volume" {
                            assert!(!ov.trim().starts_with('/'), "bind mount: {v:?}");
                        }
                    }
                }
            }
            change = change.set(key, v).expect("a checked value is accepted");
        }
    }
    let _ = change.is_empty();
}

/// The certificate date reader (`certexpiry::not_after`) on DER from the network (the
/// server's certificate) or the CA file, and the expiry warnings built from what it reads.
/// A date that is read is one the input spells out after its tag (UTCTime only for years
/// 1950–2049); the reader reads one certificate, so bytes after it change nothing and a
/// prefix can only read the same date or none; the warnings count whole days from that date
/// and show it in clean text.
pub fn cert_not_after(data: &[u8]) {
    use felhom_agent::pve::certexpiry::{CertDates, not_after};
    let got = not_after(data);
    assert_eq!(not_after(data), got, "two reads of the same bytes differ");
    for cut in [
        data.len() / 2,
        data.len() * 3 / 4,
        data.len().saturating_sub(1),
    ] {
        if let Some(t) = not_after(&data[..cut]) {
            assert_eq!(
                got,
                Some(t),
                "a prefix reads a date the whole input does not"
            );
        }
    }
    let Some(t) = got else {
        return;
    };
    assert!(
        time_text_in(data, t),
        "notAfter {t} is not spelled in the input"
    );
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x30, 0x03, 0x17, 0x01, b'Z']);
    assert_eq!(
        not_after(&longer),
        Some(t),
        "trailing bytes changed the date"
    );

    let day = 86_400;
    let shown = felhom_protocol::civil::DateTime::from_unix(t).to_string();
    let dates = CertDates {
        server_not_after: Some(t),
        ca_file_not_after: vec![t],
    };
    let w = dates.warnings(t - 10 * day, 30);
    assert_eq!(w.len(), 2, "both certificates expire inside the window");
    for w in &w {
        assert_eq!((w.not_after, w.days_left), (t, 10));
        assert!(w.message.contains(&shown), "{:?} lacks {shown}", w.message);
        assert!(is_clean_text(&w.message));
    }
    assert!(
        dates.warnings(t - 30 * day, 30).is_empty(),
        "30 days left is outside 30"
    );
    let expired = dates.warnings(t + day, 1);
    assert_eq!(expired.len(), 2);
    assert!(
        expired
            .iter()
            .all(|w| w.days_left == -1 && w.message.contains("expired 1 day(s) ago"))
    );
}

/// True when `der` holds the DER time for Unix second `t`: a GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), or a UTCTime (`YYMMDDHHMMSSZ`) when the year is 1950–2049, each right
/// after its tag and length.
pub fn time_text_in(der: &[u8], t: i64) -> bool {
    let d = felhom_protocol::civil::DateTime::from_unix(t);
    if !(0..=9999).contains(&d.year) {
        return false;
    }
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    );
    let spelled = |tag: u8, s: &str| {
        let mut tlv = vec![tag, s.len() as u8];
        tlv.extend_from_slice(s.as_bytes());
        der.windows(tlv.len()).any(|w| w == tlv)
    };
    spelled(0x18, &text) || ((1950..2050).contains(&d.year) && spelled(0x17, &text[2..]))
}
