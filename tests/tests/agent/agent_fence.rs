//! The fence around the agent stays in place: its crate-level clippy configuration forbids
//! spawning processes (CI runs clippy with `-D warnings`), and no agent source names a
//! process-spawning API.

use std::path::{Path, PathBuf};

fn agent_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent")
}

#[test]
fn agent_clippy_config_forbids_spawning_processes() {
    let cfg = std::fs::read_to_string(agent_dir().join("clippy.toml")).unwrap();
    for needed in [
        "\"std::process::Command::new\"",
        "\"tokio::process::Command::new\"",
        "\"std::process::Command\"",
        "\"tokio::process::Command\"",
        "\"libc::fork\"",
        "\"nix::unistd::fork\"",
        "\"libc::vfork\"",
        "\"libc::execvpe\"",
        "\"libc::fexecve\"",
        "\"libc::clone\"",
        "\"nix::unistd::execvpe\"",
        "\"nix::unistd::fexecve\"",
        "disallowed-methods",
        "disallowed-types",
        // A crate-level clippy.toml replaces the workspace one: the test settings must be
        // repeated or every test's unwrap becomes an error.
        "allow-unwrap-in-tests = true",
        "allow-expect-in-tests = true",
    ] {
        assert!(cfg.contains(needed), "agent/clippy.toml lacks {needed}");
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_agent_source_names_a_spawning_api() {
    let mut files = Vec::new();
    rust_files(&agent_dir().join("src"), &mut files);
    assert!(files.len() > 5, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in [
            "process::Command",
            "Command::new",
            "posix_spawn",
            "execve",
            "execvp",
            "unistd::fork",
            "vfork",
            "libc::clone",
            "clone3",
            "sched::clone",
        ] {
            assert!(
                !text.contains(banned),
                "{} mentions {banned}: the agent spawns no process",
                f.display()
            );
        }
    }
}

/// The agent does not link the raw system-call crates at all (nothing to spawn with).
#[test]
fn agent_depends_on_neither_nix_nor_libc() {
    let manifest = std::fs::read_to_string(agent_dir().join("Cargo.toml")).unwrap();
    let mut section = String::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section.contains("dependencies") {
            let name = line.split(['.', '=', ' ']).next().unwrap_or("");
            assert!(
                name != "nix" && name != "libc",
                "agent/Cargo.toml {section} lists {name}: the agent needs no raw system calls"
            );
        }
    }
}
