//! The three families of privileged operations. Each builds its argv, paths and options
//! itself from validated request types; nothing from a request is used as a path or option
//! without being one of the protocol's newtypes.

pub mod golden_image;
pub mod hardware;
pub mod usb;

use std::sync::Arc;

use felhom_protocol::HelperError;
use tokio::time::Instant;

use crate::config::{LoadedConfig, Tool};
use crate::exec::{self, ExecError, ExecOutput};

/// What an operation runs with: the configuration and its deadline.
#[derive(Debug, Clone, Copy)]
pub struct OpEnv<'a> {
    /// The loaded configuration.
    pub cfg: &'a Arc<LoadedConfig>,
    /// When the operation must be finished (server cap, shortened by the client's deadline).
    pub deadline: Instant,
    /// The operation's name, for errors.
    pub operation: &'static str,
    /// Whether this is cleanup after a failure (a rollback): its tools run to their own
    /// deadline even when the helper is shutting down.
    pub cleanup: bool,
}

impl<'a> OpEnv<'a> {
    /// The environment of a rollback: a fresh deadline, and tools that the helper's
    /// shutdown does not stop (only that deadline does).
    pub fn for_cleanup(&self, deadline: Instant) -> OpEnv<'a> {
        OpEnv {
            deadline,
            cleanup: true,
            ..*self
        }
    }

    /// Runs a configured tool through [`exec::run`], mapping failures to protocol errors.
    /// The tool's exit status is returned as is; callers decide what is a failure.
    pub async fn exec(&self, tool: Tool, args: &[String]) -> Result<ExecOutput, HelperError> {
        let c = &self.cfg.config;
        if !self.cfg.has_tool(tool) {
            return Err(HelperError::Unavailable {
                what: format!(
                    "{} is not installed at {}",
                    tool.name(),
                    c.tools.path(tool).display()
                ),
            });
        }
        exec::run_as(
            tool,
            c.tools.path(tool),
            self.cfg.configured_tools.path(tool),
            args,
            self.deadline,
            c.max_output_bytes,
            !self.cleanup,
        )
        .await
        .map_err(|e| self.exec_error(e))
    }

    /// Runs a tool and turns a non-zero exit into [`HelperError::ToolFailed`].
    pub async fn exec_ok(&self, tool: Tool, args: &[String]) -> Result<ExecOutput, HelperError> {
        let out = self.exec(tool, args).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(tool_failed(tool, &out))
        }
    }

    /// Runs blocking filesystem work (directory scans, record files) on the blocking pool,
    /// bounded by the deadline, so a slow or hostile file cannot stall the runtime while the
    /// operation lock is held.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LoadedConfig) -> Result<T, HelperError> + Send + 'static,
    ) -> Result<T, HelperError> {
        let cfg = Arc::clone(self.cfg);
        let task = tokio::task::spawn_blocking(move || f(&cfg));
        // A little past the deadline: the scans after a successful mount must not turn it
        // into an error; the server's backstop still bounds the whole operation.
        let until = self.deadline + crate::exec::TERM_GRACE;
        match tokio::time::timeout_at(until, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(HelperError::Internal {
                message: format!("{} failed: {e}", self.operation),
            }),
            Err(_) => Err(HelperError::TimedOut {
                operation: self.operation.to_string(),
                after_secs: 0,
            }),
        }
    }

    fn exec_error(&self, e: ExecError) -> HelperError {
        match e {
            ExecError::TimedOut { after_secs, .. } => HelperError::TimedOut {
                operation: self.operation.to_string(),
                after_secs,
            },
            ExecError::Spawn { tool, path, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                HelperError::Unavailable {
                    what: format!("{tool} is not installed at {path}"),
                }
            }
            ExecError::Cancelled { tool } => HelperError::Unavailable {
                what: format!("the helper is shutting down; {tool} was stopped"),
            },
            other => HelperError::Internal {
                message: other.to_string(),
            },
        }
    }
}

/// The protocol error for a tool that exited unsuccessfully.
pub fn tool_failed(tool: Tool, out: &ExecOutput) -> HelperError {
    HelperError::ToolFailed {
        tool: tool.name().to_string(),
        exit_code: out.exit_code,
        stderr_tail: out.tail(),
    }
}

/// A filesystem error as a protocol error.
pub fn io_error(what: &str, e: &std::io::Error) -> HelperError {
    HelperError::Internal {
        message: format!("{what}: {e}"),
    }
}
