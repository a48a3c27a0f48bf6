//! `felhom-helper`: the socket-activated root helper of felhom.
//!
//! It serves the typed allowlist of [`felhom_protocol::Helper`] — golden-image `pct create`,
//! USB mount by filesystem UUID, SMART and sensors — to root and the agent's user only, one
//! privileged operation at a time, each under a server-side time cap, and exits when idle.
//!
//! - [`config`]: the root-owned JSON configuration and its trust checks.
//! - [`listener`]: socket activation (strict), development `--listen`, the `SO_PEERCRED`
//!   policy.
//! - [`server`]: the tarpc service, the global operation lock, time caps, audit log, idle
//!   exit.
//! - [`exec`]: the only code that starts processes.
//! - [`contain`]: the helper as subreaper; no process outlives its operation.
//! - [`logging`]: journal entries with fields (and the audit `MESSAGE_ID`) under systemd,
//!   plain lines on stderr elsewhere.
//! - [`ops`]: the operations themselves.

pub mod audit;
pub mod config;
pub mod contain;
pub mod error;
pub mod exec;
pub mod listener;
pub mod logging;
pub mod ops;
pub mod server;

use std::path::PathBuf;

pub use error::StartupError;

/// Command-line options.
#[derive(Debug, PartialEq, Eq, clap::Parser)]
#[command(
    name = "felhom-helper",
    version,
    about = "felhom root helper: serves the typed allowlist on a socket-activated Unix socket"
)]
pub struct Args {
    /// The configuration file (root-owned, not writable by others).
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Development mode: bind this Unix socket path instead of taking the socket from systemd.
    #[arg(long, value_name = "PATH")]
    pub listen: Option<PathBuf>,
}

impl Args {
    /// The options of this process's command line.
    ///
    /// The form the units use — `--config FILE` and `--listen PATH`, each at most once, as
    /// separate arguments whose values are not empty and do not begin with `-` — is read
    /// directly, because building clap's parser is a measurable part of every
    /// socket-activated start. Anything else (`--help`, `--version`, `--config=FILE`, errors)
    /// is clap's: it prints help and usage errors and exits as usual.
    pub fn from_env() -> Args {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        match Self::plain(argv.get(1..).unwrap_or_default()) {
            Some(args) => args,
            None => <Args as clap::Parser>::parse_from(argv),
        }
    }

    /// The options, when `args` (without the program name) are in the units' plain form;
    /// `None` for anything else. Where it answers, it answers as clap would (a test holds
    /// the two together).
    pub fn plain(args: &[std::ffi::OsString]) -> Option<Args> {
        let mut config = None;
        let mut listen = None;
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let slot = match flag.to_str() {
                Some("--config") => &mut config,
                Some("--listen") => &mut listen,
                _ => return None,
            };
            let value = rest.next()?;
            let bytes = value.as_encoded_bytes();
            if slot.is_some() || bytes.is_empty() || bytes[0] == b'-' {
                return None;
            }
            *slot = Some(PathBuf::from(value));
        }
        Some(Args {
            config: config.unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH)),
            listen,
        })
    }
}

/// Runs the helper: loads the configuration, takes the socket, serves until idle.
/// Must be called before any other thread is started (socket activation requires it).
pub fn run(args: &Args) -> Result<(), StartupError> {
    let cfg = config::load(&args.config)?;
    let socket = listener::ListenSocket::obtain(args.listen.as_deref())?;
    // Every process an operation starts stays below the helper, even one that calls
    // setsid() or double-forks, so the operation can end all of them (see `contain`).
    contain::become_subreaper().map_err(|e| {
        StartupError::Runtime(format!("cannot become the subreaper of its tools: {e}"))
    })?;
    // One thread serves every connection: requests are handled one at a time per connection
    // and privileged operations one at a time overall, blocking work (sysfs, /proc, files)
    // goes to the blocking pool, and tools run as child processes. A multi-threaded runtime
    // would only add thread start-up and cross-thread hand-offs to every call.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartupError::Runtime(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(server::serve(cfg, socket));
    // Do not wait for blocking sysfs reads that may still run.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
