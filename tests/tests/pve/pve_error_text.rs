//! The text the agent builds from Proxmox's answers, exactly: control characters are
//! replaced, the byte bound is exact, a failed task's reasons and the count of omitted lines
//! are printed as documented, and the retry/`no such task` predicates answer for each kind of
//! error. (Written for mutants the cargo-mutants run found missed; see docs/records.md.)

use std::collections::BTreeMap;

use felhom_agent::pve::error::clean_text;
use felhom_agent::pve::{PveError, TaskFailure, Upid};

#[test]
fn clean_text_replaces_control_characters_and_keeps_the_rest() {
    assert_eq!(clean_text("plain text", 100), "plain text");
    assert_eq!(clean_text("a\tb\nc\rd", 100), "a b c d");
    // ESC, BEL, DEL and a C1 control (CSI): every terminal escape is defused.
    assert_eq!(
        clean_text("\u{1b}[31mred\u{7}\u{7f}\u{9b}2J", 100),
        "\u{FFFD}[31mred\u{FFFD}\u{FFFD}\u{FFFD}2J"
    );
    assert_eq!(clean_text("héllo ✓", 100), "héllo ✓");
}

#[test]
fn clean_text_cuts_exactly_at_the_bound() {
    // Exactly the bound: nothing is cut.
    assert_eq!(clean_text("abcd", 4), "abcd");
    // Past it: cut at the bound, with the count of cut bytes.
    assert_eq!(clean_text("abcdef", 4), "abcd… [2 more bytes cut]");
    // A multi-byte character that would cross the bound is cut whole.
    assert_eq!(clean_text("abcé", 4), "abc… [2 more bytes cut]");
    assert_eq!(clean_text("éé", 4), "éé");
    assert_eq!(clean_text("ééé", 4), "éé… [2 more bytes cut]");
    assert_eq!(clean_text("éééé", 5), "éé… [4 more bytes cut]");
}

fn failure(exitstatus: &str, reasons: &[&str], omitted: u64) -> TaskFailure {
    TaskFailure {
        upid: "UPID:pve:0000ABCD:0001E240:6553F0A0:vzdump:100:root@pam:"
            .parse::<Upid>()
            .unwrap(),
        task_type: "vzdump".into(),
        id: "100".into(),
        exitstatus: exitstatus.into(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        reasons_omitted: omitted,
        log_tail: Vec::new(),
        privilege: None,
    }
}

#[test]
fn a_failed_task_lists_its_reasons_without_repeating_the_exit_status() {
    let f = failure(
        "job errors",
        &["ERROR: Backup of VM 100 failed", "TASK ERROR: job errors"],
        0,
    );
    assert_eq!(
        f.to_string(),
        "task vzdump 100 failed: job errors\n  ERROR: Backup of VM 100 failed"
    );
    // A TASK ERROR line that says something else than the exit status is kept.
    let f = failure("job errors", &["TASK ERROR: something else"], 0);
    assert_eq!(
        f.to_string(),
        "task vzdump 100 failed: job errors\n  TASK ERROR: something else"
    );
    // No reasons at all: the first line alone.
    assert_eq!(
        failure("job errors", &[], 0).to_string(),
        "task vzdump 100 failed: job errors"
    );
}

#[test]
fn omitted_error_lines_are_counted_only_when_there_are_some() {
    let f = failure("job errors", &["ERROR: one"], 3);
    assert_eq!(
        f.to_string(),
        "task vzdump 100 failed: job errors\n  ERROR: one\n  … 3 more error lines in the task log"
    );
    let f = failure("job errors", &["ERROR: one"], 0);
    assert!(!f.to_string().contains("more error lines"), "{f}");
}

fn api(status: u16, message: &str) -> PveError {
    PveError::Api {
        status,
        message: message.into(),
        errors: BTreeMap::new(),
    }
}

#[test]
fn only_a_400_saying_no_such_task_is_no_such_task() {
    assert!(api(400, "no such task").is_no_such_task());
    assert!(!api(400, "something else").is_no_such_task());
    assert!(!api(500, "no such task").is_no_such_task());
    assert!(
        !PveError::NotFound {
            message: "no such task".into()
        }
        .is_no_such_task()
    );
}

#[test]
fn transport_errors_and_5xx_reads_are_retried_and_nothing_else() {
    let transport = PveError::Transport {
        method: "GET".into(),
        path: "/nodes/pve/status".into(),
        message: "connection reset".into(),
    };
    assert!(transport.is_retryable_read());
    assert!(api(500, "x").is_retryable_read());
    assert!(api(596, "x").is_retryable_read());
    assert!(!api(501, "x").is_retryable_read());
    assert!(!api(400, "x").is_retryable_read());
    assert!(
        !PveError::NotFound {
            message: "x".into()
        }
        .is_retryable_read()
    );
}
