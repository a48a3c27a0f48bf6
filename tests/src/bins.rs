//! Locating (and, when needed, building) the workspace's real binaries for end-to-end tests.
//!
//! Integration tests in this crate and the sandbox run the real `felhom-agent` and
//! `felhom-helper` executables. Cargo only provides `CARGO_BIN_EXE_*` for a package's own
//! binaries, so this module builds the other packages' binaries once per process with the same
//! cargo, profile and target directory, and returns their paths.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Name of the agent executable.
pub const AGENT: &str = "felhom-agent";
/// Name of the root helper executable.
pub const HELPER: &str = "felhom-helper";

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The directory holding this build's executables (`target/<profile>`), derived from the
/// running executable, which lives in it or in its `deps/` subdirectory.
fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate current exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| "current exe has no parent directory".to_string())?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Variables cargo sets for the crate it runs (`cargo test`, `cargo run`) that describe that
/// crate, not the build. The nested cargo must not inherit them: a build script that declares
/// `rerun-if-env-changed` on them (ring's does, on `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`,
/// `CARGO_PKG_VERSION_*`, `CARGO_MANIFEST_LINKS` and `OUT_DIR`) would then record this crate's
/// values in the nested build and nothing in the next `cargo test` from a shell, and each run
/// would rebuild ring and everything above it (rustls, reqwest, the agent, the tests) twice.
const CRATE_ENV_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
];
const CRATE_ENV_NAMES: &[&str] = &[
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Whether `name` is one of the per-crate variables of [`CRATE_ENV_PREFIXES`] and
/// [`CRATE_ENV_NAMES`] (cargo's own settings, such as `CARGO_HOME`, `CARGO_TARGET_DIR` or
/// `CARGO_BUILD_JOBS`, are not).
fn is_crate_env(name: &str) -> bool {
    CRATE_ENV_NAMES.contains(&name) || CRATE_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The `cargo build` of one package's binaries into `target` (the target directory root), as
/// run by [`build_once`]: the same cargo and profile, without the per-crate variables that the
/// running test or sandbox got from its own cargo.
fn build_command(cargo: &OsStr, package: &str, release: bool, target: Option<&Path>) -> Command {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", package, "--bins"]);
    if release {
        cmd.arg("--release");
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_crate_env) {
            cmd.env_remove(name);
        }
    }
    // Build into the same target directory the running executable came from.
    if let Some(target) = target {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    cmd
}

fn build_once() -> Result<PathBuf, String> {
    let dir = profile_dir()?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // One build per package, as `.ci/package.sh` builds what it ships: built together, the
    // helper would get the features the agent asks of shared dependencies (clap's colours and
    // suggestions), and the tests would run a different helper than the one installed. The
    // shared dependencies whose features differ get artifacts of their own beside the
    // workspace's (cargo's metadata hash tells them apart), so neither build undoes the other.
    for package in [HELPER, AGENT] {
        let status = build_command(&cargo, package, release, dir.parent())
            .status()
            .map_err(|e| format!("cannot run cargo build for {package}: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of {package} failed: {status}"));
        }
    }
    Ok(dir)
}

/// Path of a workspace binary (`AGENT` or `HELPER`), building both once if needed.
///
/// # Panics
/// Panics with the build error when the binaries cannot be built: this is test support code,
/// and a missing binary is a failed test.
pub fn path(name: &str) -> PathBuf {
    match BUILT.get_or_init(build_once) {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// Path of the real `felhom-agent` executable.
pub fn agent() -> PathBuf {
    path(AGENT)
}

/// Path of the real `felhom-helper` executable.
pub fn helper() -> PathBuf {
    path(HELPER)
}

/// Directory `../shared/fixtures/<sub>` beside the checkout, if it exists. Tests that read
/// the shared fixtures call this and skip (printing the reason) when it returns `None`.
pub fn shared_fixtures(sub: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} is absent (the shared fixtures live beside the checkout)",
            dir.display()
        );
        None
    }
}

/// What one run of the real `felhom-agent` binary printed.
#[derive(Debug)]
pub struct AgentRun {
    /// Exit code (-1 when a signal ended it).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl AgentRun {
    /// Standard output parsed as the one JSON document `--json` prints.
    ///
    /// # Panics
    /// Panics, showing both streams, when stdout is not JSON: a failed test.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }
}

/// Runs the real agent as `felhom-agent --config CONFIG ARGS…` with no stdin and no
/// `RUST_LOG` from the caller's environment, and collects what it printed.
///
/// # Panics
/// Panics when the binary cannot be started: a failed test.
pub async fn run_agent(config: &Path, args: &[&str]) -> AgentRun {
    let out = tokio::process::Command::new(agent())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", agent().display()));
    AgentRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The nested build must not see the variables cargo set for this test crate: ring's build
    /// script tracks several of them, and inheriting them made every `cargo test` run after
    /// one that built the binaries rebuild ring, rustls, reqwest, the agent and the tests.
    #[test]
    fn the_nested_build_drops_the_running_crates_cargo_variables() {
        // cargo sets these for every test it runs; without them this test proves nothing.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let cmd = build_command(OsStr::new("cargo"), HELPER, false, Some(Path::new("t")));
        let envs: Vec<_> = cmd.get_envs().collect();
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
        ] {
            assert!(
                envs.contains(&(OsStr::new(name), None)),
                "{name} is not removed: {envs:?}"
            );
        }
        assert!(envs.contains(&(OsStr::new("CARGO_TARGET_DIR"), Some(OsStr::new("t")))));
        let kept: Vec<_> = [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO",
        ]
        .into_iter()
        .filter(|n| is_crate_env(n))
        .collect();
        assert!(
            kept.is_empty(),
            "cargo settings taken for per-crate variables: {kept:?}"
        );
    }
}
