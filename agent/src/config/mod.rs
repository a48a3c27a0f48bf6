//! Agent configuration: JSON file plus `FELHOM_*` environment overrides.
//!
//! The file (default `/etc/felhom/agent.json`) is a flat JSON object; every key has an
//! environment override (`FELHOM_<KEY>` in upper case), and the environment wins:
//!
//! | key | env | meaning |
//! |---|---|---|
//! | `api_url` | `FELHOM_API_URL` | `https://127.0.0.1:8006` (the client appends `/api2/json`); without a port, 8006 (pveproxy's port, not 443) |
//! | `node` | `FELHOM_NODE` | PVE node name |
//! | `token_id` | `FELHOM_TOKEN_ID` | `USER@REALM!TOKENID` |
//! | `token_secret_file` | `FELHOM_TOKEN_SECRET_FILE` | file holding the secret; default `$CREDENTIALS_DIRECTORY/pve-token`; outside `$CREDENTIALS_DIRECTORY` it must be owned by the agent's user with no group/other permissions (mode 0600), else refused |
//! | `tls_fingerprint` | `FELHOM_TLS_FINGERPRINT` | SHA-256 leaf pin, colon hex |
//! | `tls_ca_file` | `FELHOM_TLS_CA_FILE` | PEM CA file |
//! | `tls_insecure` | `FELHOM_TLS_INSECURE` | `true` only when explicitly wanted |
//! | `tls_server_name` | `FELHOM_TLS_SERVER_NAME` | verify the chain for this DNS name while connecting to `api_url` (system roots or `tls_ca_file`) |
//! | `tls_expiry_warn_days` | `FELHOM_TLS_EXPIRY_WARN_DAYS` | `selftest` warns when the server's or the CA file's certificate expires within this many days, default 30 (0..=3650, 0 = never) |
//! | `helper_socket` | `FELHOM_HELPER_SOCKET` | default `/run/felhom/helper.sock` |
//! | `state_dir` | `FELHOM_STATE_DIR` | default `/var/lib/felhom-agent` |
//! | `interval_secs` | `FELHOM_INTERVAL_SECS` | service interval in seconds (fractions allowed, at least 0.1), default 300 |
//! | `metrics_file` | `FELHOM_METRICS_FILE` | Prometheus metrics written by `run`, default `<state_dir>/felhom-agent.prom` |
//! | `request_timeout_secs` | `FELHOM_REQUEST_TIMEOUT_SECS` | per HTTP request, default 30 |
//! | `max_response_bytes` | `FELHOM_MAX_RESPONSE_BYTES` | largest API response body read, default 32 MiB (1 KiB..1 GiB) |
//! | `drill_scratch_range` | `FELHOM_DRILL_SCRATCH_RANGE` | `FIRST-LAST` vmids `backup verify` and the drill schedule may restore into and `--cleanup` may remove, default `9000-9099` |
//! | `drill_guests` | `FELHOM_DRILL_GUESTS` | the containers `run` drills on a schedule: vmids separated by commas, or `all`; default empty (off) |
//! | `drill_interval_secs` | `FELHOM_DRILL_INTERVAL_SECS` | each guest is drilled at most this often, default 604800 (7 days) |
//! | `drill_settle_secs` | `FELHOM_DRILL_SETTLE_SECS` | how long a scheduled drill's copy must stay running, default 30 |
//! | `drill_timeout_secs` | `FELHOM_DRILL_TIMEOUT_SECS` | limit for one scheduled drill's restore, start and settle, default 3600 |
//! | `drill_target_storage` | `FELHOM_DRILL_TARGET_STORAGE` | storage for the copies' root filesystems, default the one each guest's rootfs is on |
//!
//! At most one of the three TLS keys may be set; none means the system trust store. If any
//! `FELHOM_TLS_*` variable is set (non-empty), the file's three TLS keys are ignored, so the
//! environment replaces the file's TLS mode as a whole. The secret itself is never taken from
//! the environment or the command line — only from a file (or systemd's
//! `LoadCredential=pve-token:…`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::drill::schedule::DrillSchedule;
use crate::pve::{ApiSettings, Fingerprint, NodeName, TlsMode, TokenId};

mod values;

use crate::secret::Secret;
pub use values::{DEFAULT_API_PORT, DEFAULT_DRILL_SCRATCH_RANGE, DEFAULT_TLS_EXPIRY_WARN_DAYS};
use values::{
    abs_path, drill_schedule, parse_bool, parse_byte_cap, parse_interval, parse_scratch_range,
    parse_secs, parse_url, parse_warn_days,
};

/// Default config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/felhom/agent.json";
/// Default helper socket.
pub const DEFAULT_HELPER_SOCKET: &str = "/run/felhom/helper.sock";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/felhom-agent";
/// Name of the systemd credential holding the token secret.
pub const CREDENTIAL_NAME: &str = "pve-token";

/// All keys, in file order.
pub const KEYS: &[&str] = &[
    "api_url",
    "node",
    "token_id",
    "token_secret_file",
    "tls_fingerprint",
    "tls_ca_file",
    "tls_insecure",
    "tls_server_name",
    "tls_expiry_warn_days",
    "helper_socket",
    "state_dir",
    "interval_secs",
    "request_timeout_secs",
    "metrics_file",
    "max_response_bytes",
    "drill_scratch_range",
    "drill_guests",
    "drill_interval_secs",
    "drill_settle_secs",
    "drill_timeout_secs",
    "drill_target_storage",
];

/// The keys that together choose the TLS mode (at most one may be set).
const TLS_KEYS: &[&str] = &["tls_fingerprint", "tls_ca_file", "tls_insecure"];

/// The environment variable overriding `key`.
pub fn env_name(key: &str) -> String {
    format!("FELHOM_{}", key.to_ascii_uppercase())
}

/// A configuration problem; always names the key (or the file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is not a JSON object.
    #[error("config file {path} is not a valid JSON object: {message}")]
    Parse {
        /// File.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A key the agent does not know.
    #[error("unknown config key `{key}` in {path} (known keys: {})", KEYS.join(", "))]
    UnknownKey {
        /// Key.
        key: String,
        /// File.
        path: String,
    },
    /// A required key is missing.
    #[error("missing config key `{key}` (set it in the config file or via {})", env_name(.key))]
    Missing {
        /// Key.
        key: &'static str,
    },
    /// A key has a bad value.
    #[error("bad value for config key `{key}` (from {source_name}): {reason}")]
    Invalid {
        /// Key.
        key: &'static str,
        /// Where the value came from (file path or env variable).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// More than one TLS mode.
    #[error(
        "config keys {0} are mutually exclusive: set at most one of tls_fingerprint, tls_ca_file, tls_insecure"
    )]
    TlsConflict(String),
    /// The token secret could not be read.
    #[error("token secret (config key `token_secret_file`): {0}")]
    Secret(#[from] crate::secret::SecretError),
    /// No secret file configured and no systemd credential directory.
    #[error(
        "no token secret: set `token_secret_file` (or FELHOM_TOKEN_SECRET_FILE), or run under systemd with LoadCredential={CREDENTIAL_NAME}:… so that $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} exists"
    )]
    NoSecret,
}

/// The agent's configuration. Holds the secret's location, not the secret.
#[derive(Clone, PartialEq)]
pub struct AgentConfig {
    /// API base, e.g. `https://127.0.0.1:8006`.
    pub api_url: url::Url,
    /// Node name.
    pub node: NodeName,
    /// Token id.
    pub token_id: TokenId,
    /// Where the secret is read from (explicit file or systemd credential).
    pub token_secret_file: PathBuf,
    /// `$CREDENTIALS_DIRECTORY` when the configuration was loaded: a secret file under it
    /// is a systemd credential, exempt from the owner and mode check of
    /// [`Secret::from_file_in`].
    pub credentials_directory: Option<PathBuf>,
    /// Certificate verification.
    pub tls: TlsMode,
    /// The name the certificate chain is verified for, instead of `api_url`'s host.
    pub tls_server_name: Option<String>,
    /// `selftest` warns when a certificate expires within this many days (0: never).
    pub tls_expiry_warn_days: u32,
    /// Helper socket.
    pub helper_socket: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Service collection interval.
    pub interval: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Where `run` writes the Prometheus metrics after each cycle.
    pub metrics_file: PathBuf,
    /// Largest API response body read (counted while reading).
    pub max_response_bytes: usize,
    /// The vmids a restore drill may use as its scratch guest (inclusive).
    pub drill_scratch_range: (u32, u32),
    /// The restore drills `run` makes on a schedule (off unless `drill_guests` is set).
    pub drill: DrillSchedule,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("api_url", &self.api_url.as_str())
            .field("node", &self.node)
            .field("token_id", &self.token_id)
            .field("token_secret_file", &self.token_secret_file)
            .field("credentials_directory", &self.credentials_directory)
            .field("token_secret", &crate::secret::REDACTED)
            .field("tls", &self.tls)
            .field("tls_server_name", &self.tls_server_name)
            .field("tls_expiry_warn_days", &self.tls_expiry_warn_days)
            .field("helper_socket", &self.helper_socket)
            .field("state_dir", &self.state_dir)
            .field("interval", &self.interval)
            .field("request_timeout", &self.request_timeout)
            .field("metrics_file", &self.metrics_file)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("drill_scratch_range", &self.drill_scratch_range)
            .field("drill", &self.drill)
            .finish()
    }
}

/// Where a value came from, for error messages.
struct Lookup<'a> {
    file: Map<String, Value>,
    path: String,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Lookup<'a> {
    /// Reads and parses the config file (a missing default file is an empty one), refusing
    /// unknown keys.
    fn read(
        path: Option<&Path>,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<Lookup<'a>, ConfigError> {
        let (file_path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let shown = file_path.display().to_string();
        let file = match std::fs::read_to_string(&file_path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(ConfigError::Parse {
                        path: shown,
                        message: "top level must be a JSON object".into(),
                    });
                }
                Err(e) => {
                    return Err(ConfigError::Parse {
                        path: shown,
                        message: e.to_string(),
                    });
                }
            },
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: shown,
                    source,
                });
            }
        };
        if let Some(key) = file.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                path: shown,
            });
        }
        Ok(Lookup {
            file,
            path: shown,
            env,
        })
    }

    /// The value for `key` as text, and where it came from. Env wins; empty env is unset.
    fn get(&self, key: &'static str) -> Result<Option<(String, String)>, ConfigError> {
        let var = env_name(key);
        if let Some(v) = (self.env)(&var).filter(|v| !v.is_empty()) {
            return Ok(Some((v, var)));
        }
        match self.file.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some((s.clone(), self.path.clone()))),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                Ok(Some((v.to_string(), self.path.clone())))
            }
            Some(other) => Err(ConfigError::Invalid {
                key,
                source_name: self.path.clone(),
                reason: format!("expected a string, number or boolean, got {other}"),
            }),
        }
    }

    fn required(&self, key: &'static str) -> Result<(String, String), ConfigError> {
        self.get(key)?.ok_or(ConfigError::Missing { key })
    }

    fn parsed<T, E: fmt::Display>(
        &self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some((v, source_name)) => parse(v.trim()).map(Some).map_err(|e| ConfigError::Invalid {
                key,
                source_name,
                reason: e.to_string(),
            }),
        }
    }
}

impl AgentConfig {
    /// Loads `path` (default [`DEFAULT_CONFIG_PATH`]) and applies `FELHOM_*` overrides from
    /// the process environment. A missing *default* file is allowed (everything can come from
    /// the environment); a missing explicit file is an error.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        AgentConfig::load_with_env(path, &|k| std::env::var(k).ok())
    }

    /// Only the helper socket (`helper_socket`, default `/run/felhom/helper.sock`), for
    /// commands that never call the Proxmox API (golden image, USB, SMART, sensors): they
    /// work on a host whose API settings are not written yet. The file is still parsed and
    /// unknown keys are still refused.
    pub fn load_helper_socket(path: Option<&Path>) -> Result<PathBuf, ConfigError> {
        AgentConfig::load_helper_socket_with_env(path, &|k| std::env::var(k).ok())
    }

    /// Like [`AgentConfig::load_helper_socket`], with an explicit environment (for tests).
    pub fn load_helper_socket_with_env(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PathBuf, ConfigError> {
        let l = Lookup::read(path, env)?;
        Ok(l.parsed("helper_socket", abs_path)?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HELPER_SOCKET)))
    }

    /// Like [`AgentConfig::load`], with an explicit environment (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let l = Lookup::read(path, env)?;
        let (url_text, url_src) = l.required("api_url")?;
        let api_url = parse_url(url_text.trim()).map_err(|reason| ConfigError::Invalid {
            key: "api_url",
            source_name: url_src,
            reason,
        })?;
        let node = l
            .parsed("node", NodeName::new)?
            .ok_or(ConfigError::Missing { key: "node" })?;
        let token_id = l
            .parsed("token_id", TokenId::new)?
            .ok_or(ConfigError::Missing { key: "token_id" })?;
        let credentials_directory = env("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let token_secret_file = match l.parsed("token_secret_file", abs_path)? {
            Some(p) => p,
            None => match &credentials_directory {
                Some(dir) => dir.join(CREDENTIAL_NAME),
                None => return Err(ConfigError::NoSecret),
            },
        };

        // The TLS mode is one choice made by three keys: if the environment sets any of them,
        // the file's three are ignored (env wins) rather than combined into a conflict.
        let env_tls = TLS_KEYS
            .iter()
            .any(|k| env(&env_name(k)).is_some_and(|v| !v.is_empty()));
        let tls_lookup = Lookup {
            file: if env_tls { Map::new() } else { l.file.clone() },
            path: l.path.clone(),
            env,
        };
        let fingerprint = tls_lookup.parsed("tls_fingerprint", |s| s.parse::<Fingerprint>())?;
        let ca_file = tls_lookup.parsed("tls_ca_file", abs_path)?;
        let insecure = tls_lookup
            .parsed("tls_insecure", parse_bool)?
            .unwrap_or(false);
        let mut set = Vec::new();
        if fingerprint.is_some() {
            set.push("tls_fingerprint");
        }
        if ca_file.is_some() {
            set.push("tls_ca_file");
        }
        if insecure {
            set.push("tls_insecure");
        }
        if set.len() > 1 {
            return Err(ConfigError::TlsConflict(set.join(" and ")));
        }
        let tls = match (fingerprint, ca_file, insecure) {
            (Some(fp), _, _) => TlsMode::Pinned(fp),
            (_, Some(ca), _) => TlsMode::CaFile(ca),
            (_, _, true) => TlsMode::Insecure,
            _ => TlsMode::SystemRoots,
        };
        let tls_server_name = l.parsed("tls_server_name", |s| {
            crate::pve::tls::parse_server_name(s).map(|_| s.trim().to_string())
        })?;
        if tls_server_name.is_some() && matches!(tls, TlsMode::Pinned(_) | TlsMode::Insecure) {
            return Err(ConfigError::Invalid {
                key: "tls_server_name",
                source_name: "the TLS settings".into(),
                reason: "it applies only to chain verification (system roots or tls_ca_file); a pinned or unverified certificate is not checked for a name".into(),
            });
        }

        let state_dir = l
            .parsed("state_dir", abs_path)?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let drill_scratch_range = l
            .parsed("drill_scratch_range", parse_scratch_range)?
            .unwrap_or(DEFAULT_DRILL_SCRATCH_RANGE);
        let metrics_file = l
            .parsed("metrics_file", abs_path)?
            .unwrap_or_else(|| state_dir.join(crate::metrics::DEFAULT_METRICS_FILE));
        Ok(AgentConfig {
            api_url,
            node,
            token_id,
            token_secret_file,
            credentials_directory,
            tls,
            tls_server_name,
            tls_expiry_warn_days: l
                .parsed("tls_expiry_warn_days", parse_warn_days)?
                .unwrap_or(DEFAULT_TLS_EXPIRY_WARN_DAYS),
            helper_socket: l
                .parsed("helper_socket", abs_path)?
                .unwrap_or_else(|| PathBuf::from(DEFAULT_HELPER_SOCKET)),
            state_dir,
            metrics_file,
            interval: l
                .parsed("interval_secs", parse_interval)?
                .unwrap_or(Duration::from_secs(300)),
            request_timeout: l
                .parsed("request_timeout_secs", parse_secs(3600))?
                .unwrap_or(Duration::from_secs(30)),
            max_response_bytes: l
                .parsed("max_response_bytes", parse_byte_cap)?
                .unwrap_or(crate::pve::DEFAULT_MAX_RESPONSE_BYTES),
            drill_scratch_range,
            drill: drill_schedule(&l, drill_scratch_range)?,
        })
    }

    /// Reads the token secret and produces the client settings.
    pub fn api_settings(&self) -> Result<ApiSettings, ConfigError> {
        let token_secret = Secret::from_file_in(
            &self.token_secret_file,
            self.credentials_directory.as_deref(),
        )?;
        Ok(ApiSettings {
            api_url: self.api_url.clone(),
            node: self.node.clone(),
            token_id: self.token_id.clone(),
            token_secret,
            tls: self.tls.clone(),
            tls_server_name: self.tls_server_name.clone(),
            request_timeout: self.request_timeout,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::schedule::DrillGuests;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("agent.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    const FP: &str = "80:d4:f2:df:64:95:cd:8d:a0:82:82:ac:48:ba:c0:7a:1b:6b:87:8b:fe:b9:83:1c:95:4e:79:58:77:99:69:f5";

    #[test]
    fn the_drill_schedule_is_off_by_default_and_parses_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/nonexistent""#;
        let p = write(dir.path(), &format!("{{{base}}}"));
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert!(!c.drill.enabled());
        assert_eq!(c.drill, DrillSchedule::default());
        let p = write(
            dir.path(),
            &format!(
                r#"{{{base},"drill_guests":"102,101","drill_interval_secs":86400,"drill_settle_secs":"5","drill_timeout_secs":600,"drill_target_storage":"local-lvm"}}"#
            ),
        );
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        let v = |n| felhom_protocol::Vmid::new(n).unwrap();
        assert_eq!(c.drill.guests, DrillGuests::List(vec![v(101), v(102)]));
        assert_eq!(c.drill.interval, Duration::from_secs(86_400));
        assert_eq!(c.drill.settle, Duration::from_secs(5));
        assert_eq!(c.drill.timeout, Duration::from_secs(600));
        assert_eq!(
            c.drill.target_storage.as_ref().unwrap().as_str(),
            "local-lvm"
        );
        // The environment wins, and `off` turns it off again.
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_DRILL_GUESTS", "off")]))
            .unwrap();
        assert!(!c.drill.enabled());
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_DRILL_GUESTS", "all")]))
            .unwrap();
        assert_eq!(c.drill.guests, DrillGuests::All);
        for (key, bad) in [
            ("drill_guests", "\"101,x\""),
            ("drill_guests", "\"9050\""),
            ("drill_interval_secs", "0"),
            ("drill_settle_secs", "3601"),
            ("drill_timeout_secs", "\"soon\""),
            ("drill_target_storage", "\"bad storage\""),
        ] {
            let p = write(dir.path(), &format!(r#"{{{base},"{key}":{bad}}}"#));
            let e = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
            assert!(e.to_string().contains(key), "{key}={bad}: {e}");
        }
    }

    #[test]
    fn drill_scratch_range_defaults_parses_and_refuses_bad_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/nonexistent""#;
        let p = write(dir.path(), &format!("{{{base}}}"));
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert_eq!(c.drill_scratch_range, (9000, 9099));
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"drill_scratch_range":"500-510"}}"#),
        );
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert_eq!(c.drill_scratch_range, (500, 510));
        let c = AgentConfig::load_with_env(
            Some(&p),
            &env_of(&[("FELHOM_DRILL_SCRATCH_RANGE", "7000 - 7000")]),
        )
        .unwrap();
        assert_eq!(c.drill_scratch_range, (7000, 7000));
        for bad in ["9099-9000", "99-200", "9000", "a-b", "9000-1000000000"] {
            let p = write(
                dir.path(),
                &format!(r#"{{{base},"drill_scratch_range":"{bad}"}}"#),
            );
            let e = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
            assert!(e.to_string().contains("drill_scratch_range"), "{bad}: {e}");
        }
    }

    #[test]
    fn file_with_defaults_and_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent"}"#,
        );
        std::fs::write(dir.path().join("pve-token"), "sekrit-1234\n").unwrap();
        let creds = dir.path().to_str().unwrap().to_string();
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("CREDENTIALS_DIRECTORY", &creds)]))
            .unwrap();
        assert_eq!(c.node.as_str(), "pve");
        assert_eq!(c.tls, TlsMode::SystemRoots);
        assert_eq!(c.helper_socket, PathBuf::from(DEFAULT_HELPER_SOCKET));
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_response_bytes, crate::pve::DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(c.token_secret_file, dir.path().join("pve-token"));
        let s = c.api_settings().unwrap();
        assert_eq!(s.token_secret.expose(), "sekrit-1234");
        assert!(!format!("{s:?}{c:?}").contains("sekrit-1234"));
    }

    #[test]
    fn metrics_file_defaults_into_the_state_dir_and_must_be_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/etc/felhom/pve-token""#;
        let p = write(dir.path(), &format!(r#"{{{base},"state_dir":"/srv/fa"}}"#));
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert_eq!(c.metrics_file, PathBuf::from("/srv/fa/felhom-agent.prom"));
        let c = AgentConfig::load_with_env(
            Some(&p),
            &env_of(&[(
                "FELHOM_METRICS_FILE",
                "/var/lib/prometheus/node-exporter/f.prom",
            )]),
        )
        .unwrap();
        assert_eq!(
            c.metrics_file,
            PathBuf::from("/var/lib/prometheus/node-exporter/f.prom")
        );
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"metrics_file":"rel.prom"}}"#),
        );
        let e = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("metrics_file"), "{e}");
    }

    #[test]
    fn tls_expiry_warn_days_defaults_to_30_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/etc/felhom/pve-token""#;
        let p = write(dir.path(), &format!("{{{base}}}"));
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert_eq!(c.tls_expiry_warn_days, 30);
        for (v, want) in [("0", 0), ("3650", 3650), ("14", 14)] {
            let p = write(
                dir.path(),
                &format!(r#"{{{base},"tls_expiry_warn_days":{v}}}"#),
            );
            let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
            assert_eq!(c.tls_expiry_warn_days, want, "{v}");
        }
        let c =
            AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_TLS_EXPIRY_WARN_DAYS", "7")]))
                .unwrap();
        assert_eq!(c.tls_expiry_warn_days, 7, "the environment wins");
        for bad in ["3651", "-1", "1.5", "\"soon\"", "4294967296"] {
            let p = write(
                dir.path(),
                &format!(r#"{{{base},"tls_expiry_warn_days":{bad}}}"#),
            );
            let e = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
            assert!(
                matches!(
                    &e,
                    ConfigError::Invalid {
                        key: "tls_expiry_warn_days",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn env_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"api_url":"https://10.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/etc/felhom/pve-token","interval_secs":60}"#,
        );
        let c = AgentConfig::load_with_env(
            Some(&p),
            &env_of(&[
                ("FELHOM_API_URL", "https://127.0.0.1:9999"),
                ("FELHOM_NODE", "pve2"),
                ("FELHOM_TLS_FINGERPRINT", FP),
                ("FELHOM_INTERVAL_SECS", "120"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api_url.port(), Some(9999));
        assert_eq!(c.node.as_str(), "pve2");
        assert!(matches!(c.tls, TlsMode::Pinned(_)));
        assert_eq!(c.interval, Duration::from_secs(120));
        // Fractions of a second (the soak runs at 0.2 s) and an explicit response cap.
        let c = AgentConfig::load_with_env(
            Some(&p),
            &env_of(&[
                ("FELHOM_INTERVAL_SECS", "0.2"),
                ("FELHOM_MAX_RESPONSE_BYTES", "1048576"),
            ]),
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_millis(200));
        assert_eq!(c.max_response_bytes, 1 << 20);
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x""#;
        let cases: &[(&str, &str)] = &[
            (
                r#"{"node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x"}"#,
                "api_url",
            ),
            (
                &format!(r#"{{{base},"tls_fingerprint":"zz"}}"#),
                "tls_fingerprint",
            ),
            (&format!(r#"{{{base},"interval_secs":0}}"#), "interval_secs"),
            (
                &format!(r#"{{{base},"interval_secs":0.05}}"#),
                "interval_secs",
            ),
            (
                &format!(r#"{{{base},"interval_secs":"NaN"}}"#),
                "interval_secs",
            ),
            (
                &format!(r#"{{{base},"max_response_bytes":100}}"#),
                "max_response_bytes",
            ),
            (
                &format!(r#"{{{base},"max_response_bytes":"2000000000"}}"#),
                "max_response_bytes",
            ),
            (&format!(r#"{{{base},"bogus":1}}"#), "bogus"),
            (
                &format!(r#"{{{base},"helper_socket":"rel/path"}}"#),
                "helper_socket",
            ),
            (
                r#"{"api_url":"http://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x"}"#,
                "api_url",
            ),
            (
                r#"{"api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve","token_secret_file":"/x"}"#,
                "token_id",
            ),
            (
                r#"{"api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent"}"#,
                "token_secret_file",
            ),
        ];
        for (json, key) in cases {
            let p = write(dir.path(), json);
            let err = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
            assert!(err.to_string().contains(key), "{json}: {err}");
        }
        let err = AgentConfig::load_with_env(Some(&dir.path().join("nope.json")), &env_of(&[]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn api_url_without_port_uses_8006() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str)] = &[
            ("https://pve.example", "https://pve.example:8006/"),
            ("https://pve.example/", "https://pve.example:8006/"),
            ("HTTPS://PVE.example", "https://pve.example:8006/"),
            ("https://10.0.0.1", "https://10.0.0.1:8006/"),
            ("https://[fd00::1]", "https://[fd00::1]:8006/"),
            ("https://[fd00::1]:8443", "https://[fd00::1]:8443/"),
            ("https://pve.example:8006", "https://pve.example:8006/"),
            // An explicit 443 is kept (url normalises it away, so it is read from the text).
            ("https://pve.example:443", "https://pve.example/"),
            ("https://pve.example:443/", "https://pve.example/"),
        ];
        for (given, want) in cases {
            let p = write(
                dir.path(),
                &format!(
                    r#"{{"api_url":"{given}","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x"}}"#
                ),
            );
            let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
            assert_eq!(c.api_url.as_str(), *want, "{given}");
            let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_API_URL", given)]))
                .unwrap();
            assert_eq!(c.api_url.as_str(), *want, "env {given}");
        }
    }

    #[test]
    fn tls_conflict_names_exactly_the_conflicting_keys() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x""#;
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"tls_insecure":true,"tls_ca_file":"/ca.pem"}}"#),
        );
        let err = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::TlsConflict(keys) if keys == "tls_ca_file and tls_insecure"),
            "{err:?}"
        );
        // Two TLS variables in the environment conflict the same way.
        let p = write(dir.path(), &format!("{{{base}}}"));
        let err = AgentConfig::load_with_env(
            Some(&p),
            &env_of(&[
                ("FELHOM_TLS_FINGERPRINT", FP),
                ("FELHOM_TLS_INSECURE", "true"),
            ]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::TlsConflict(keys) if keys == "tls_fingerprint and tls_insecure"),
            "{err:?}"
        );
    }

    #[test]
    fn tls_server_name_goes_with_chain_verification_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x""#;
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"tls_ca_file":"/ca.pem","tls_server_name":"pve.example.com"}}"#),
        );
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert_eq!(c.tls_server_name.as_deref(), Some("pve.example.com"));
        assert_eq!(c.tls, TlsMode::CaFile("/ca.pem".into()));
        // With a pin or no verification it would silently do nothing: refused.
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"tls_insecure":true,"tls_server_name":"pve.example.com"}}"#),
        );
        let err = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::Invalid {
                    key: "tls_server_name",
                    ..
                }
            ),
            "{err:?}"
        );
        // Not a name.
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"tls_server_name":"bad name!"}}"#),
        );
        let err = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("tls_server_name"), "{err}");
    }

    /// Any `FELHOM_TLS_*` variable replaces the file's whole TLS choice (env wins), instead
    /// of being combined with it into a conflict.
    #[test]
    fn env_tls_replaces_the_files_tls_mode() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x""#;
        let p = write(
            dir.path(),
            &format!(r#"{{{base},"tls_fingerprint":"{FP}"}}"#),
        );
        let c = AgentConfig::load_with_env(
            Some(&p),
            &env_of(&[("FELHOM_TLS_CA_FILE", "/etc/pve/pve-root-ca.pem")]),
        )
        .unwrap();
        assert_eq!(
            c.tls,
            TlsMode::CaFile(PathBuf::from("/etc/pve/pve-root-ca.pem"))
        );
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_TLS_INSECURE", "true")]))
            .unwrap();
        assert_eq!(c.tls, TlsMode::Insecure);
        // `FELHOM_TLS_INSECURE=false` alone resets to the system trust store.
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_TLS_INSECURE", "false")]))
            .unwrap();
        assert_eq!(c.tls, TlsMode::SystemRoots);
        // File insecure, env pin: the pin.
        let p = write(dir.path(), &format!(r#"{{{base},"tls_insecure":true}}"#));
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_TLS_FINGERPRINT", FP)]))
            .unwrap();
        assert!(matches!(c.tls, TlsMode::Pinned(_)), "{:?}", c.tls);
        // An empty variable counts as unset: the file's mode stays.
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_TLS_FINGERPRINT", "")]))
            .unwrap();
        assert_eq!(c.tls, TlsMode::Insecure);
    }

    #[test]
    fn insecure_must_be_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/x","tls_insecure":false}"#,
        );
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[])).unwrap();
        assert_eq!(c.tls, TlsMode::SystemRoots);
        let c = AgentConfig::load_with_env(Some(&p), &env_of(&[("FELHOM_TLS_INSECURE", "true")]))
            .unwrap();
        assert_eq!(c.tls, TlsMode::Insecure);
    }
}
