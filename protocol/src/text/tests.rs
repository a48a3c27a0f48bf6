// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// A policy with its bound fixed.
type Policy = fn(&str) -> String;

/// Every policy, by name, with a bound large enough for the short inputs below.
fn policies() -> [(&'static str, Policy); 7] {
    [
        ("terminal", |s| terminal(s, 4096)),
        ("one_line", |s| one_line(s, 4096)),
        ("log_value", |s| log_value(s, 4096)),
        ("audit_value", |s| audit_value(s, 4096)),
        ("prometheus_label", |s| prometheus_label(s, 4096)),
        ("label", |s| label(s, 4096)),
        ("process_name", |s| process_name(s, 4096)),
    ]
}

/// The inputs of the property tests: every byte 0..=255 as a character (C0, DEL, C1,
/// Latin-1) and as lossy UTF-8, every pair of bytes as lossy UTF-8 (broken and valid
/// multi-byte sequences), and every character of the Basic Multilingual Plane plus the
/// emoji planes' first block and the last scalar value, each alone and between letters.
fn hostile_inputs() -> impl Iterator<Item = String> {
    let bytes = (0u8..=255).flat_map(|b| {
        [
            char::from(b).to_string(),
            format!("a{}b", char::from(b)),
            String::from_utf8_lossy(&[b, b'x']).into_owned(),
        ]
    });
    let pairs = (0u16..=0xffff).map(|p| String::from_utf8_lossy(&p.to_be_bytes()).into_owned());
    let chars = (0u32..=0xffff)
        .chain(0x1_f000..=0x1_f0ff)
        .chain([0x10_ffff])
        .filter_map(char::from_u32)
        .map(|c| format!("x{c}\u{1b}[2J{c}"));
    bytes.chain(pairs).chain(chars)
}

/// The fuzz-style property: whatever comes in, no policy lets a control character through
/// (so no line break and no terminal escape), and the two escaping policies let no invisible
/// format character through either.
#[test]
fn no_policy_lets_a_control_character_through() {
    for input in hostile_inputs() {
        for (name, policy) in policies() {
            let out = policy(&input);
            assert!(
                !out.chars().any(char::is_control),
                "{name} let a control character through: {input:?} -> {out:?}"
            );
            if matches!(name, "log_value" | "audit_value") {
                assert!(
                    !out.chars().any(is_invisible),
                    "{name} let an invisible character through: {input:?} -> {out:?}"
                );
            }
        }
    }
}

/// Text with nothing to clean passes every policy unchanged (when within the bound).
#[test]
fn plain_text_is_kept() {
    for input in [
        "plain text",
        "héllo wörld ✓",
        "a\u{200a}b\u{2030}c\u{206a}",
        "日本語 🦀",
    ] {
        for (name, policy) in policies() {
            assert_eq!(policy(input), input, "{name}");
        }
    }
}

/// Each bounded policy stays within its bound plus its marker, for every bound and input
/// length, and never splits a character (the result is a `String`, so a split would panic).
#[test]
fn every_bound_holds() {
    let inputs = [
        "abcdef".to_string(),
        "é".repeat(40),
        "\u{1b}".repeat(40),
        "a\u{202e}".repeat(20),
        "🦀\n".repeat(20),
    ];
    for input in &inputs {
        for max in 0..=input.len() + 2 {
            assert!(terminal(input, max).len() <= max + "… [999 more bytes cut]".len());
            assert!(one_line(input, max).len() <= max + '…'.len_utf8());
            assert!(log_value(input, max).len() <= max + '…'.len_utf8());
            // The audit bound counts input bytes; an escape is at most 10 bytes per character.
            assert!(audit_value(input, max).len() <= (max + 4) * 10 + "…[cut]".len());
            assert!(prometheus_label(input, max).chars().count() <= 2 * max);
            assert!(label(input, max).chars().count() <= max);
            assert!(process_name(input, max).chars().count() <= max);
        }
    }
}

#[test]
fn terminal_replaces_controls_and_notes_the_cut() {
    assert_eq!(terminal("a\tb\nc\rd", 100), "a b c d");
    assert_eq!(
        terminal("\u{1b}[31mred\u{7}\u{7f}\u{9b}2J", 100),
        "\u{FFFD}[31mred\u{FFFD}\u{FFFD}\u{FFFD}2J"
    );
    assert_eq!(terminal("abcd", 4), "abcd");
    assert_eq!(terminal("abcdef", 4), "abcd… [2 more bytes cut]");
    assert_eq!(terminal("abcé", 4), "abc… [2 more bytes cut]");
}

#[test]
fn one_line_uses_spaces_and_trims() {
    assert_eq!(one_line("a\x1b[31mred\x07\r\n", 1024), "a [31mred");
    assert_eq!(one_line("tab\there", 1024), "tab here");
    let long = "é".repeat(2000);
    let c = one_line(&long, 1024);
    assert!(c.len() <= 1024 + '…'.len_utf8(), "{}", c.len());
    assert!(c.ends_with('…'));
    assert_eq!(one_line("abc ", 3), "abc…");
}

#[test]
fn log_values_are_escaped_and_bounded() {
    assert_eq!(
        log_value("a\u{1b}[31mb\nc", usize::MAX),
        "a\\u{1b}[31mb\\nc"
    );
    assert_eq!(log_value("tab\t", usize::MAX), "tab\\t");
    let tricky = "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{200b}f\u{feff}g\u{2060}h\u{200f}";
    assert_eq!(
        log_value(tricky, usize::MAX),
        "a\\u{2028}b\\u{2029}c\\u{202e}d\\u{2066}e\\u{200b}f\\u{feff}g\\u{2060}h\\u{200f}"
    );
    // The cut never splits an escape.
    assert_eq!(log_value("ab\u{1b}", 4), "ab…");
    assert_eq!(log_value("abcdef", 3), "abc…");
    assert_eq!(log_value("abc", 3), "abc");
}

#[test]
fn audit_values_keep_one_record_on_one_line() {
    let forged =
        "mount failed\nINFO audit: seq=9 op=\"usb_mount\" outcome=ok\r\x1b[31mred\x1b[0m\ttab\\";
    assert_eq!(
        audit_value(forged, 2048),
        "mount failed\\nINFO audit: seq=9 op=\"usb_mount\" outcome=ok\\r\\x1b[31mred\\x1b[0m\\ttab\\\\"
    );
    assert_eq!(audit_value("\u{0}\u{7f}\u{85}é", 100), "\\x00\\x7f\\u{85}é");
    assert_eq!(
        audit_value(&"a".repeat(10_000), 100),
        format!("{}…[cut]", "a".repeat(100))
    );
    assert!(audit_value(&"é".repeat(100), 11).ends_with("…[cut]"));
    assert_eq!(
        audit_value(
            "a\u{2028}b\u{2029}c\u{202a}\u{202e}d\u{2066}\u{2069}e\u{200b}\u{200f}f\u{2060}\u{feff}",
            2048
        ),
        "a\\u{2028}b\\u{2029}c\\u{202a}\\u{202e}d\\u{2066}\\u{2069}e\\u{200b}\\u{200f}f\\u{2060}\\u{feff}"
    );
}

#[test]
fn prometheus_labels_are_escaped_and_bounded() {
    assert_eq!(prometheus_label("a\"b\\c\nd", 128), "a\\\"b\\\\c\\nd");
    assert_eq!(prometheus_label("x\u{1b}[31my", 128), "x[31my");
    assert_eq!(prometheus_label(&"z".repeat(500), 128).len(), 128);
}

#[test]
fn labels_and_process_names() {
    assert_eq!(label("  Samsung\u{1b}[2J SSD \n", 64), "Samsung[2J SSD");
    assert_eq!(label(&"x".repeat(100), 64).len(), 64);
    assert_eq!(process_name("evil\u{1b}[2J\n", 64), "evil?[2J?");
    assert_eq!(process_name(&"y".repeat(100), 64).len(), 64);
}

#[test]
fn invisible_characters_are_exactly_the_listed_ranges() {
    for c in [
        '\u{200b}', '\u{200f}', '\u{2028}', '\u{202e}', '\u{2060}', '\u{2066}', '\u{2069}',
        '\u{feff}',
    ] {
        assert!(is_invisible(c), "{c:?}");
    }
    for c in [
        '\u{200a}', '\u{2010}', '\u{2027}', '\u{202f}', '\u{2061}', '\u{2065}', '\u{206a}', 'a',
    ] {
        assert!(!is_invisible(c), "{c:?}");
    }
}
