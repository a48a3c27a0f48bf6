//! Command handlers: each turns parsed arguments into typed API or helper calls and an
//! [`Outcome`].

use serde_json::json;

use super::output::Outcome;
use super::progress::ProgressMode;
use super::{Cli, CliError, Command, GoldenImageAction};
use crate::config::AgentConfig;
use crate::helper_client::HelperClient;
use crate::pve::{PveClient, RestoreRequest};

fn load_config(cli: &Cli) -> Result<AgentConfig, CliError> {
    Ok(AgentConfig::load(cli.config.as_deref())?)
}

pub(super) fn pve_client(config: &AgentConfig) -> Result<PveClient, CliError> {
    let settings = config.api_settings()?;
    Ok(PveClient::new(&settings)?)
}

pub(super) async fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    // Commands that only talk to the helper need no API settings, so they work on a host
    // whose agent.json is not written yet.
    let helper_only = || -> Result<HelperClient, CliError> {
        let socket = AgentConfig::load_helper_socket(cli.config.as_deref())?;
        Ok(HelperClient::new(&socket))
    };
    match &cli.command {
        Command::GoldenImage {
            action: GoldenImageAction::Create(args),
        } => return super::helper_cmds::golden_image(&helper_only()?, args).await,
        Command::Usb { action } => return super::helper_cmds::usb(&helper_only()?, action).await,
        Command::Smart { disk } => {
            return super::helper_cmds::smart(&helper_only()?, disk.clone()).await;
        }
        Command::Sensors => return super::helper_cmds::sensors(&helper_only()?).await,
        _ => {}
    }
    let config = load_config(&cli)?;
    let helper = || HelperClient::new(&config.helper_socket);
    let pm = ProgressMode::detect(cli.quiet, cli.json);
    match &cli.command {
        Command::Selftest { task } => {
            super::selftest::selftest(&config, &helper(), *task, pm).await
        }
        Command::Guests => super::guests::guests(&pve_client(&config)?).await,
        Command::Guest { vmid } => super::guests::guest(&pve_client(&config)?, *vmid).await,
        Command::Snapshot { action } => {
            super::guests::snapshot(&pve_client(&config)?, action, pm).await
        }
        Command::Backup {
            vmid,
            storage,
            mode,
            prune,
        } => super::backup::backup(&pve_client(&config)?, *vmid, storage, *mode, *prune, pm).await,
        Command::Restore {
            archive,
            vmid,
            storage,
            unique,
            force,
            hostname,
            keep_identity,
        } => {
            let req = RestoreRequest {
                vmid: *vmid,
                archive: archive.clone(),
                storage: storage.clone(),
                unique: *unique,
                force: *force,
                start: false,
                hostname: None,
            };
            let identity = if *keep_identity {
                None
            } else {
                Some(hostname.as_ref().map(|h| h.to_string()))
            };
            super::backup::restore(&pve_client(&config)?, req, identity, pm).await
        }
        Command::Start { vmid } => {
            super::power::power(&pve_client(&config)?, *vmid, true, pm).await
        }
        Command::Stop { vmid } => {
            super::power::power(&pve_client(&config)?, *vmid, false, pm).await
        }
        Command::Shutdown {
            vmid,
            timeout,
            force_stop,
        } => super::power::shutdown(&pve_client(&config)?, *vmid, *timeout, *force_stop, pm).await,
        Command::SetConfig { vmid, changes } => {
            let change = super::setconfig::parse_changes(changes)?;
            super::setconfig::set_config(&pve_client(&config)?, *vmid, change).await
        }
        Command::Storage { action: None } => super::storage::list(&pve_client(&config)?).await,
        Command::Storage {
            action: Some(action),
        } => super::storage::run(&pve_client(&config)?, action).await,
        Command::Tasks { action } => {
            super::tasks::run(&pve_client(&config)?, action, cli.json, pm).await
        }
        Command::GoldenImage { .. }
        | Command::Usb { .. }
        | Command::Smart { .. }
        | Command::Sensors => unreachable_helper_only(),
        Command::Run => {
            let pve = pve_client(&config)?;
            crate::service::run(&config, pve, helper())
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            Ok(Outcome::new(&json!({ "ok": true }), String::new()))
        }
    }
}

/// The helper-only commands return before the full configuration is loaded.
fn unreachable_helper_only() -> Result<Outcome, CliError> {
    Err(CliError::Failed(
        "internal error: a helper-only command reached the API dispatch".into(),
    ))
}
