//! Errors that stop the helper from starting or serving. Errors of a single request are
//! [`felhom_protocol::HelperError`] and go back to the agent instead.

use std::path::PathBuf;

/// Why the helper cannot start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration file cannot be used. Exit status 2.
    #[error("configuration error in {path}: {reason}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file the helper trusts (config or tool) could be changed by someone else. Exit 2.
    #[error("refusing to trust {path}: {reason}")]
    Insecure {
        /// The file or directory.
        path: PathBuf,
        /// Who else could change it.
        reason: String,
    },
    /// Neither systemd socket activation nor `--listen` was given, or the activation
    /// environment is inconsistent. Exit status 2.
    #[error("{0}")]
    Activation(String),
    /// The listening socket could not be set up. Exit status 1.
    #[error("listening socket: {0}")]
    Listen(String),
    /// Anything else at run time. Exit status 1.
    #[error("{0}")]
    Runtime(String),
}

impl StartupError {
    /// The process exit status for this error: 2 for configuration and usage errors, 1
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Config { .. }
            | StartupError::Insecure { .. }
            | StartupError::Activation(_) => 2,
            StartupError::Listen(_) | StartupError::Runtime(_) => 1,
        }
    }
}
