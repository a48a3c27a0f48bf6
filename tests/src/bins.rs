//! Locating (and, when needed, building) the workspace's real binaries for end-to-end tests.
//!
//! Integration tests in this crate and the sandbox run the real `felhom-agent` and
//! `felhom-helper` executables. Cargo only provides `CARGO_BIN_EXE_*` for a package's own
//! binaries, so this module builds the other packages' binaries once per process with the same
//! cargo, profile and target directory, and returns their paths.

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

fn build_once() -> Result<PathBuf, String> {
    let dir = profile_dir()?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    // One build per package, as `.ci/package.sh` builds what it ships: built together, the
    // helper would get the features the agent asks of shared dependencies (clap's colours and
    // suggestions), and the tests would run a different helper than the one installed.
    for package in [HELPER, AGENT] {
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(&manifest)
            .args(["-p", package, "--bins"]);
        if release {
            cmd.arg("--release");
        }
        // Build into the same target directory the running executable came from.
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd
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
