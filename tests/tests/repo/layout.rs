//! The test crate's own layout: exactly four test binaries (`tests/tests/{agent,helper,pve,
//! repo}/main.rs`), every module file of them compiled, and one lint table for the crate
//! that differs from the workspace's only where test code needs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// `key = value` lines of the TOML table `[name]` in `text` (tables here are flat).
fn table(text: &str, name: &str) -> BTreeMap<String, String> {
    let header = format!("[{name}]");
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_test_crate_builds_four_test_binaries() {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(tests_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            entry.file_type().unwrap().is_dir(),
            "tests/tests/{name} is its own test binary: make it a module of one of the four"
        );
        dirs.push(name);
    }
    dirs.sort();
    assert_eq!(dirs, ["agent", "helper", "pve", "repo"]);
}

#[test]
fn every_test_file_is_a_module_of_its_binary() {
    for bin in ["agent", "helper", "pve", "repo"] {
        let dir = tests_dir().join(bin);
        let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if stem == "main" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            assert!(
                main.lines().any(|l| l.trim() == format!("mod {stem};")),
                "tests/tests/{bin}/{stem}.rs is never compiled: add `mod {stem};` to {bin}/main.rs"
            );
        }
    }
}

#[test]
fn the_test_crate_lints_are_the_workspace_lints_but_unwrap() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = std::fs::read_to_string(root.join("../Cargo.toml")).unwrap();
    let tests = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for group in ["rust", "clippy"] {
        let mut want = table(&workspace, &format!("workspace.lints.{group}"));
        assert!(!want.is_empty(), "no [workspace.lints.{group}] table");
        if group == "clippy" {
            for lint in ["unwrap_used", "expect_used"] {
                want.insert(lint.into(), "\"allow\"".into());
            }
        }
        assert_eq!(
            table(&tests, &format!("lints.{group}")),
            want,
            "[lints.{group}]"
        );
    }
}
