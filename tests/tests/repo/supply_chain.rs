//! Supply chain checks on the locked dependency tree (what `cargo deny` would check, without
//! installing it): every package comes from crates.io or this repository, every license is on
//! a permissive allowlist, and packages present in two versions are exactly the reviewed list
//! below. Advisories are checked by `cargo audit` in `.ci/supply-chain.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// License identifiers allowed anywhere in a package's license expression.
const LICENSES: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "LLVM-exception",
    "ISC",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "Unicode-3.0",
    "Unlicense",
    "BSL-1.0",
    "Zlib",
    "CC0-1.0",
];

/// Packages present in two versions, each with why. A new duplicate (or one that went away)
/// fails the test so this list stays true.
const DUPLICATES: &[(&str, &str)] = &[
    (
        "base64",
        "0.22 via rcgen/pem (tests only), 0.23 via reqwest/hyper-util",
    ),
    ("cpufeatures", "0.2 via sha2, 0.3 via rand/chacha20 (tarpc)"),
    ("getrandom", "0.2 via ring, 0.4 via rand (tarpc)"),
    ("syn", "2 and 3 for proc macros at build time only"),
    ("synstructure", "follows the two syn versions"),
];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

fn license_ids(expr: &str) -> Vec<String> {
    expr.replace(['(', ')'], " ")
        .replace('/', " OR ")
        .split_whitespace()
        .filter(|t| !matches!(*t, "OR" | "AND" | "WITH"))
        .map(str::to_string)
        .collect()
}

#[test]
fn sources_licenses_and_duplicates() {
    let m = metadata();
    let packages = m["packages"].as_array().expect("packages");
    assert!(packages.len() > 50, "suspiciously few packages");
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let version = p["version"].as_str().unwrap();
        versions
            .entry(name.to_string())
            .or_default()
            .insert(version.to_string());
        match p["source"].as_str() {
            None => assert!(
                name.starts_with("felhom-"),
                "{name}: a path dependency outside this repository"
            ),
            Some(src) => assert_eq!(src, CRATES_IO, "{name} {version}: source {src}"),
        }
        let license = p["license"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} {version}: no license"));
        if name.starts_with("felhom-") {
            continue;
        }
        for id in license_ids(license) {
            assert!(
                LICENSES.contains(&id.as_str()),
                "{name} {version}: license {license:?} has {id}, not on the allowlist"
            );
        }
    }
    let dups: BTreeSet<&str> = versions
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(n, _)| n.as_str())
        .collect();
    let reviewed: BTreeSet<&str> = DUPLICATES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        dups, reviewed,
        "duplicate versions changed; review them and update DUPLICATES"
    );
    println!(
        "{} packages: sources, licenses and {} reviewed duplicates ok",
        packages.len(),
        dups.len()
    );
}

#[test]
fn the_license_parser_sees_every_identifier() {
    assert_eq!(
        license_ids("(MIT OR Apache-2.0) AND Unicode-3.0"),
        ["MIT", "Apache-2.0", "Unicode-3.0"]
    );
    assert_eq!(license_ids("MIT/Apache-2.0"), ["MIT", "Apache-2.0"]);
    assert!(!LICENSES.contains(&"GPL-3.0"));
}
