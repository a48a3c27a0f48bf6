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
    /// The fake helper (script its replies, read the calls it got).
    pub helper: FakeHelper,
    /// The temporary directory holding the config and the token file `pve-token`.
    pub dir: tempfile::TempDir,
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
            helper,
            dir,
        })
    }

    /// Runs the agent with this config and `args`.
    pub async fn agent(&self, args: &[&str]) -> AgentRun {
        bins::run_agent(&self.config, args).await
    }
}

/// An [`AgentEnv`] whose simulated tasks take 50 ms, the setup of most agent CLI tests.
pub async fn env() -> AgentEnv {
    env_with(Duration::from_millis(50)).await
}

/// An [`AgentEnv`] whose simulated tasks take `task_duration`.
///
/// # Panics
/// When the simulator or the fake helper cannot start: in a test, a failed setup is a
/// failed test.
#[allow(clippy::expect_used)] // test support: the documented panic is a failed test
pub async fn env_with(task_duration: Duration) -> AgentEnv {
    AgentEnv::start(task_duration)
        .await
        .expect("starting the simulator and the fake helper")
}

/// Runs the agent of `env` with `args` (the free-function form the tests call).
pub async fn agent(env: &AgentEnv, args: &[&str]) -> AgentRun {
    env.agent(args).await
}
