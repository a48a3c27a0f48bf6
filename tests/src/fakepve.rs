//! fakepve, an independent fake of the Proxmox VE 9 API (PyPI `fakepve`, pinned in `.ci/run`),
//! as a child process for the conformance suite (`tests/tests/pve/pve_fakepve.rs`).
//!
//! `.ci/run` installs it into a virtualenv at `target/fakepve-venv` and exports
//! `FELHOM_FAKEPVE` (that venv's `python`). [`FakePve::start`] runs `tests/fakepve/launch.py`
//! with it on 127.0.0.1 and a free port; the launcher writes every request fakepve's schema
//! validation rejects to a file, read back by [`FakePve::rejections`]. The child is ended by
//! its pid when the [`FakePve`] is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Node name the suite's fakepve serves.
pub const NODE: &str = "pve1";
/// API token id the suite registers.
pub const TOKEN_ID: &str = "root@pam!felhom";
/// Secret of [`TOKEN_ID`].
pub const TOKEN_SECRET: &str = "5e1b0d2a-7c1f-4b8e-9a55-2f3c4d5e6f70";

/// The Python interpreter of the fakepve virtualenv, or `None` (with the reason printed as
/// `skipping …`) when it or the package is unavailable.
pub fn python(test: &str) -> Option<PathBuf> {
    let py = match std::env::var_os("FELHOM_FAKEPVE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fakepve-venv/bin/python"),
    };
    let ok = Command::new(&py)
        .args([
            "-c",
            "import fakepve, cryptography, sys; sys.exit(fakepve.__version__ != '0.5.0')",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(py)
    } else {
        eprintln!(
            "skipping {test}: fakepve 0.5.0 is not importable with {} (set FELHOM_FAKEPVE to a \
             python with `fakepve[crypto]==0.5.0`, as .ci/run does)",
            py.display()
        );
        None
    }
}

/// A scenario for the launcher: containers, volumes and faults, merged into the defaults.
pub fn scenario(extra: Value) -> Value {
    let mut base = json!({
        "password": "not-the-public-default",
        "node": NODE,
        "token_id": TOKEN_ID,
        "token_secret": TOKEN_SECRET,
        "time_scale": 0.0,
    });
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// A running fakepve child process.
#[derive(Debug)]
pub struct FakePve {
    child: Child,
    port: u16,
    fingerprint: String,
    dir: tempfile::TempDir,
}

impl FakePve {
    /// Starts fakepve with `scenario` (see [`scenario`]) using the interpreter `python`.
    pub fn start(python: &Path, scenario: &Value) -> anyhow::Result<FakePve> {
        let dir = tempfile::tempdir()?;
        let sc = dir.path().join("scenario.json");
        std::fs::write(&sc, serde_json::to_vec(scenario)?)?;
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("fakepve/launch.py");
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let mut child = Command::new(python)
            .arg(&launcher)
            .arg(&sc)
            .arg(dir.path().join("rejections.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let mut me = FakePve {
            child,
            port: 0,
            fingerprint: String::new(),
            dir,
        };
        if read.unwrap_or(0) == 0 {
            bail!("fakepve did not start: {}", me.stderr());
        }
        let ready: Value = serde_json::from_str(&line).context("fakepve's ready line")?;
        me.port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("port")?;
        me.fingerprint = ready["fingerprint"].as_str().context("fingerprint")?.into();
        Ok(me)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// SHA-256 fingerprint of the server certificate, `AA:BB:…`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// What fakepve wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Every request fakepve's schema validation rejected so far, one JSON object each.
    pub fn rejections(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("rejections.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Writes an agent config for this server (token secret file, pinned fingerprint; the
    /// helper socket is a path nobody listens on: the PVE commands do not use it).
    pub fn write_agent_config(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let token = dir.join("pve-token");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token)
            .and_then(|mut f| f.write_all(TOKEN_SECRET.as_bytes()))?;
        let config = json!({
            "api_url": self.base_url(),
            "node": NODE,
            "token_id": TOKEN_ID,
            "token_secret_file": token,
            "tls_fingerprint": self.fingerprint,
            "helper_socket": dir.join("no-helper.sock"),
            "state_dir": dir.join("state"),
            "interval_secs": 1,
            "request_timeout_secs": 10,
        });
        let path = dir.join("agent.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        Ok(path)
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
