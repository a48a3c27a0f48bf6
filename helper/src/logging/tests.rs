//! Tests of the logging: the exact datagram, escaping, bounds, the filter, and a journal
//! that stalls.

use super::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Parses a native-protocol entry written in the `NAME=value\n` form.
fn parse(entry: &[u8]) -> BTreeMap<String, String> {
    let text = std::str::from_utf8(entry).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn capture_with(filter: Filter, emit: impl FnOnce()) -> Vec<BTreeMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    server.set_nonblocking(true).unwrap();
    let journal = JournalLayer::connect(&path).unwrap();
    let pending = journal.pending();
    let mut buf = vec![0u8; 256 * 1024];
    // The probe datagram of connect().
    assert_eq!(server.recv(&mut buf).unwrap(), 0);
    tracing::subscriber::with_default(HelperSubscriber::journal(filter, journal), emit);
    assert!(
        wait_empty(&pending, Duration::from_secs(10)),
        "writer stuck"
    );
    let mut entries = Vec::new();
    while let Ok(n) = server.recv(&mut buf) {
        entries.push(parse(&buf[..n]));
    }
    entries
}

fn capture(emit: impl FnOnce()) -> Vec<BTreeMap<String, String>> {
    capture_with(Filter::default(), emit)
}

#[test]
fn audit_record_becomes_an_entry_with_prefixed_fields_and_the_message_id() {
    let entries = capture(|| {
        tracing::warn!(
            target: "audit",
            op = "usb_mount",
            peer_uid = 998u32,
            peer_pid = 4242u32,
            request = %"UsbMountRequest { uuid: \"x\" }\n\u{1b}[31mFAKE",
            outcome = "ok",
            duration_ms = 17u64,
            seq = 3u64,
            "privileged operation"
        );
        tracing::info!(target: "felhom_helper::server", peer_uid = 0u32, "idle; exiting");
    });
    assert_eq!(entries.len(), 2, "{entries:?}");
    let a = &entries[0];
    assert_eq!(a["MESSAGE_ID"], AUDIT_MESSAGE_ID);
    assert_eq!(a["PRIORITY"], "4");
    assert_eq!(a["MESSAGE"], "privileged operation");
    assert_eq!(a["SYSLOG_IDENTIFIER"], "felhom-helper");
    assert_eq!(a["FELHOM_TARGET"], "audit");
    assert_eq!(a["FELHOM_OP"], "usb_mount");
    assert_eq!(a["FELHOM_PEER_UID"], "998");
    assert_eq!(a["FELHOM_PEER_PID"], "4242");
    assert_eq!(a["FELHOM_OUTCOME"], "ok");
    assert_eq!(a["FELHOM_DURATION_MS"], "17");
    assert_eq!(a["FELHOM_SEQ"], "3");
    // The newline and the escape sequence arrive escaped, not raw.
    assert_eq!(
        a["FELHOM_REQUEST"],
        "UsbMountRequest { uuid: \"x\" }\\n\\u{1b}[31mFAKE"
    );
    let other = &entries[1];
    assert!(!other.contains_key("MESSAGE_ID"), "{other:?}");
    assert_eq!(other["PRIORITY"], "6");
    assert_eq!(other["MESSAGE"], "idle; exiting");
    assert_eq!(other["FELHOM_TARGET"], "felhom_helper::server");
}

#[test]
fn huge_values_are_cut() {
    let big = "x".repeat(100_000);
    let entries =
        capture(|| tracing::error!(target: "audit", request = %big, text = big.as_str(), "m"));
    assert_eq!(entries.len(), 1);
    for name in ["FELHOM_REQUEST", "FELHOM_TEXT"] {
        let v = &entries[0][name];
        assert!(v.len() <= MAX_VALUE_BYTES + '…'.len_utf8(), "{}", v.len());
        assert!(v.ends_with('…'), "{name}");
    }
    assert_eq!(entries[0]["PRIORITY"], "3");
}

#[test]
fn a_huge_debug_value_is_not_formatted_in_full() {
    /// Counts how many bytes its Debug impl was allowed to write.
    struct Endless(std::cell::Cell<usize>);
    impl std::fmt::Debug for Endless {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for _ in 0..1_000_000 {
                f.write_str("0123456789")?;
                self.0.set(self.0.get() + 10);
            }
            Ok(())
        }
    }
    let value = Endless(std::cell::Cell::new(0));
    let entries = capture(|| tracing::warn!(big = ?value, "m"));
    assert!(entries[0]["FELHOM_BIG"].ends_with('…'));
    assert!(value.0.get() <= MAX_VALUE_BYTES + 10, "{}", value.0.get());
}

#[test]
fn the_default_filter_keeps_tarpc_spans_and_events_out() {
    let f = Filter::default();
    assert_eq!(f.level_for("felhom_helper::server"), LevelFilter::INFO);
    assert_eq!(f.level_for("audit"), LevelFilter::INFO);
    assert_eq!(f.level_for("tarpc"), LevelFilter::OFF);
    assert_eq!(f.level_for("tarpc::server"), LevelFilter::OFF);
    // A target that merely starts with the same letters is not tarpc's.
    assert_eq!(f.level_for("tarpcish"), LevelFilter::INFO);
    let entries = capture(|| {
        tracing::info!(target: "tarpc::server", "ReceiveRequest");
        let span = tracing::info_span!(target: "tarpc::server", "RPC", rpc.trace_id = 7);
        let _e = span.enter();
        tracing::warn!(target: "tarpc::server", "Requests stream errored out");
        tracing::error!(target: "tarpc::server::in_flight_requests", "DeadlineExceeded");
        tracing::info!(target: "felhom_helper::server", "kept");
    });
    let messages: Vec<&str> = entries.iter().map(|e| e["MESSAGE"].as_str()).collect();
    assert_eq!(messages, ["kept"]);
}

#[test]
fn invisible_format_characters_are_escaped_in_fields_and_lines() {
    let tricky = "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{200b}f\u{feff}g\u{2060}h\u{200f}";
    assert_eq!(
        clean(tricky),
        "a\\u{2028}b\\u{2029}c\\u{202e}d\\u{2066}e\\u{200b}f\\u{feff}g\\u{2060}h\\u{200f}"
    );
    // Letters around them, and other non-ASCII text, stay as they are.
    assert_eq!(clean("héllo wörld ✓"), "héllo wörld ✓");
    let entries = capture(|| tracing::warn!(target: "audit", request = %tricky, "m\u{202e}x"));
    assert_eq!(entries.len(), 1);
    for v in [&entries[0]["FELHOM_REQUEST"], &entries[0]["MESSAGE"]] {
        assert!(!v.chars().any(felhom_protocol::text::is_invisible), "{v:?}");
    }
    assert_eq!(entries[0]["MESSAGE"], "m\\u{202e}x");
}

/// A journal that takes nothing (its socket's queue full, nobody reading) does not block
/// the code that logs: events are queued up to the bound, the rest counted, the mutating
/// records among them written to the fallback at once; once the journal reads again, a
/// record says how many were dropped, and nothing is lost uncounted.
#[test]
fn a_stalled_journal_never_blocks_and_the_dropped_records_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    // Fill the socket's queue: further sends would block.
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut filled = 0;
    loop {
        match filler.send_to(b"FILL=1\n", &path) {
            Ok(_) => filled += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let captured = Arc::new(std::sync::Mutex::new(Vec::new()));
    let journal =
        JournalLayer::with_fallback(&path, Fallback::Capture(Arc::clone(&captured))).unwrap();
    let pending = journal.pending();
    const EVENTS: u64 = 5_000;
    const MUTATING: u64 = 20;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // The logging side runs on its own thread, so a blocking send fails the test (by the
    // timeout below) instead of hanging it.
    std::thread::spawn(move || {
        let sub = HelperSubscriber::journal(Filter::default(), journal);
        tracing::subscriber::with_default(sub, || {
            for i in 0..EVENTS - MUTATING {
                tracing::info!(target: "audit", op = "usb_list", n = i, "privileged operation");
            }
            for i in 0..MUTATING {
                tracing::warn!(target: "audit", op = "usb_unmount", n = i, "privileged operation");
            }
            let _ = done_tx.send(());
        });
    });
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("logging blocked on a journal that does not read");
    // The last records came when the queue was full: each mutating one is on the fallback.
    let fallback = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    assert_eq!(
        fallback
            .lines()
            .filter(|l| l.contains("op=\"usb_unmount\""))
            .count() as u64,
        MUTATING,
        "{fallback}"
    );
    // The journal reads again: everything queued arrives, then the count of the rest.
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut delivered, mut dropped) = (0u64, None);
    let mut fill_seen = 0;
    while let Ok(n) = server.recv(&mut buf) {
        if n == 0 {
            continue;
        }
        let e = parse(&buf[..n]);
        if e.contains_key("FILL") {
            fill_seen += 1;
        } else if let Some(d) = e.get("FELHOM_DROPPED") {
            assert!(
                e["MESSAGE"].starts_with(&format!("dropped {d} records")),
                "{e:?}"
            );
            assert_eq!(e["MESSAGE_ID"], AUDIT_MESSAGE_ID);
            dropped = Some(d.parse::<u64>().unwrap());
        } else if !e.is_empty() {
            delivered += 1;
        }
    }
    assert!(wait_empty(&pending, Duration::from_secs(10)));
    assert_eq!(fill_seen, filled);
    let dropped = dropped.expect("no `dropped N records` entry");
    assert!(dropped >= MUTATING, "{dropped}");
    assert_eq!(
        delivered + dropped,
        EVENTS,
        "every event is delivered or counted"
    );
}

#[test]
fn rust_log_directives_parse_and_the_most_specific_target_wins() {
    let f: Filter = "warn, felhom_helper=debug ,felhom_helper::exec=trace,tarpc=off"
        .parse()
        .unwrap();
    assert_eq!(f.level_for("audit"), LevelFilter::WARN);
    assert_eq!(f.level_for("felhom_helper::server"), LevelFilter::DEBUG);
    assert_eq!(f.level_for("felhom_helper::exec"), LevelFilter::TRACE);
    assert_eq!(f.level_for("tarpc::client"), LevelFilter::OFF);
    assert_eq!(f.max_level(), LevelFilter::TRACE);
    let bare: Filter = "felhom_helper".parse().unwrap();
    assert_eq!(bare.level_for("felhom_helper::ops"), LevelFilter::TRACE);
    assert_eq!(bare.level_for("audit"), LevelFilter::ERROR);
    for bad in ["info!", "x=loud", "a b=info", "[span]=info", "=info"] {
        assert!(bad.parse::<Filter>().is_err(), "{bad:?} parsed");
    }
    let entries = capture_with(f, || {
        tracing::info!(target: "audit", "dropped");
        tracing::debug!(target: "felhom_helper::server", "kept");
    });
    let messages: Vec<&str> = entries.iter().map(|e| e["MESSAGE"].as_str()).collect();
    assert_eq!(messages, ["kept"]);
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    let at = |s: u64, us: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us);
    assert_eq!(timestamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        timestamp(at(1_764_633_723, 456_789)),
        "2025-12-02T00:02:03.456789Z"
    );
    assert_eq!(
        timestamp(at(4_102_444_799, 1)),
        "2099-12-31T23:59:59.000001Z"
    );
}

#[test]
fn plain_line_is_one_line_with_escaped_values() {
    let f = Fields {
        message: clean("privileged\noperation"),
        fields: vec![
            ("OP".into(), "usb_mount".into(), true),
            ("REQUEST".into(), clean("a \"b\"\n\u{1b}[2J"), true),
            ("PEER_UID".into(), "998".into(), false),
        ],
    };
    let at = UNIX_EPOCH + Duration::from_secs(1_764_633_723);
    let line = plain_line(at, &Level::WARN, "audit", &f);
    assert_eq!(line.matches('\n').count(), 1);
    assert!(!line.contains('\u{1b}'));
    assert_eq!(
        line,
        "2025-12-02T00:02:03.000000Z  WARN audit: privileged\\noperation op=\"usb_mount\" \
         request=\"a \\\"b\\\"\\n\\u{1b}[2J\" peer_uid=998\n"
    );
}

#[test]
fn field_names_are_journal_safe() {
    assert_eq!(field_name("peer_uid"), "PEER_UID");
    assert_eq!(field_name("_hidden"), "HIDDEN");
    assert_eq!(field_name("a.b-c"), "A_B_C");
    assert_eq!(field_name("__"), "FIELD");
}

#[test]
fn connect_fails_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    assert!(JournalLayer::connect(&dir.path().join("none.sock")).is_err());
}
