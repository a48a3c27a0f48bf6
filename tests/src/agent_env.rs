//! What a test of the real `felhom-agent` binary needs: the Proxmox simulator, a fake helper
//! and an agent configuration pointing at both, kept alive together.

use std::path::PathBuf;
use std::time::Duration;

use crate::bins::{self, AgentRun};
use crate::fake_helper::{FakeHelper, write_agent_config};
use crate::pve_sim::{PveSim, SimOptions};

/// A simulator, a fake helper and the agent's config file for them.
#[derive(Debug)]
pub struct AgentEnv {
    /// The simulator (steer it through `sim.state()`).
    pub sim: PveSim,
    /// The agent configuration file.
    pub config: PathBuf,
    _helper: FakeHelper,
    _dir: tempfile::TempDir,
}

impl AgentEnv {
    /// Starts a simulator whose tasks take `task_duration` and a fake helper, builds the agent
    /// binary if needed and writes its config. Needs a multi-threaded runtime.
    pub async fn start(task_duration: Duration) -> anyhow::Result<AgentEnv> {
        tokio::task::block_in_place(bins::agent);
        let sim = PveSim::start(SimOptions {
            task_duration,
            ..SimOptions::default()
        })
        .await?;
        let helper = FakeHelper::start().await?;
        let dir = tempfile::tempdir()?;
        let config = write_agent_config(dir.path(), &sim, helper.socket_path(), 1)?;
        Ok(AgentEnv {
            sim,
            config,
            _helper: helper,
            _dir: dir,
        })
    }

    /// Runs the agent with this config and `args`.
    pub async fn agent(&self, args: &[&str]) -> AgentRun {
        bins::run_agent(&self.config, args).await
    }
}
