//! The `felhom-agent` command line: clap definitions, dispatch and exit codes.
//!
//! Exit codes: 0 success; 1 the operation failed or the report is degraded; 2 usage or
//! configuration error (clap's own usage errors also exit 2). With `--json` the result is one
//! JSON document on stdout; otherwise a human table. Logs always go to stderr.

mod backup;
mod drill;
mod guests;
mod ha;
mod helper_cmds;
mod output;
mod power;
pub mod progress;
mod selftest;
mod setconfig;
mod storage;
mod task_output;
mod tasks;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use felhom_protocol::{
    Bridge, Cores, DiskName, FsUuid, Hostname, MemoryMib, MountName, RootfsGib, TemplateVolid, Vmid,
};

use crate::config::{AgentConfig, ConfigError};
use crate::helper_client::{HelperClient, HelperClientError};
use crate::pve::{
    PveClient, PveError, RestoreRequest, SnapshotName, StorageId, TaskType, Upid, VolumeId,
};
use progress::ProgressMode;

pub use output::Outcome;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the operation failed, or the health report is degraded.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// The felhom host agent: Proxmox VE API work with a scoped token, root operations through
/// the felhom helper.
#[derive(Debug, Parser)]
#[command(name = "felhom-agent", version, about, max_term_width = 100)]
pub struct Cli {
    /// Config file (default /etc/felhom/agent.json; every key also has a FELHOM_* env override).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the result as one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No live progress on stderr while waiting for a task.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read-only health report: Proxmox, guests, storage, helper, SMART, sensors.
    Selftest {
        /// Also run snapshot → rollback → delete snapshot on this container.
        #[arg(long, value_name = "VMID")]
        task: Option<Vmid>,
    },
    /// List the containers on this node.
    Guests,
    /// Status and config of one container.
    Guest {
        /// The container.
        vmid: Vmid,
    },
    /// Create, roll back to, or delete a snapshot.
    Snapshot {
        /// What to do.
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Back up a container with vzdump (zstd): `backup VMID --storage S`; or check that a
    /// backup restores and boots: `backup verify VMID --scratch-vmid N`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Backup {
        /// The container.
        #[arg(required = true)]
        vmid: Option<Vmid>,
        /// Target storage.
        #[arg(long, required = true)]
        storage: Option<StorageId>,
        /// Backup mode.
        #[arg(long, value_enum, default_value_t = Mode::Snapshot)]
        mode: Mode,
        /// Let vzdump prune older backups of the guest by the storage's retention settings
        /// (remove=1). Without it nothing is deleted (remove=0).
        #[arg(long)]
        prune: bool,
        /// `verify`: the restore drill.
        #[command(subcommand)]
        action: Option<BackupAction>,
    },
    /// Restore a container from a backup archive. When the target vmid differs from the
    /// archive's guest (a copy), resets the network identity unless --keep-identity is
    /// given: removes the MAC addresses (Proxmox assigns new ones) and sets the hostname
    /// (--hostname, or `<source hostname>-<vmid>`). Restoring over the archive's own vmid
    /// (--force, disaster recovery) keeps MAC addresses and hostname.
    Restore {
        /// The backup volume, e.g. local:backup/vzdump-lxc-101-….tar.zst.
        archive: VolumeId,
        /// The new container's id.
        #[arg(long)]
        vmid: Vmid,
        /// Storage for the root filesystem.
        #[arg(long)]
        storage: StorageId,
        /// Ask Proxmox itself for unique values (unique=1): new MAC addresses, and IPAM
        /// handling on SDN; the hostname and static addresses stay.
        #[arg(long)]
        unique: bool,
        /// Overwrite an existing container with this id.
        #[arg(long)]
        force: bool,
        /// Set this hostname on the restored container (default: the source's hostname
        /// followed by `-<vmid>`).
        #[arg(long)]
        hostname: Option<Hostname>,
        /// Keep the archive's MAC addresses and hostname.
        #[arg(long, conflicts_with = "hostname")]
        keep_identity: bool,
    },
    /// Start a container.
    Start {
        /// The container.
        vmid: Vmid,
    },
    /// Stop a container (immediately).
    Stop {
        /// The container.
        vmid: Vmid,
    },
    /// Shut a container down cleanly and wait for it.
    Shutdown {
        /// The container.
        vmid: Vmid,
        /// Seconds the container has to shut down (Proxmox's default 60).
        #[arg(long, value_name = "S", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=86_400))]
        timeout: u32,
        /// Stop the container hard when it has not shut down within the timeout.
        #[arg(long)]
        force_stop: bool,
    },
    /// Change allowed config keys (KEY=VALUE …; `set-config --help` lists the keys).
    SetConfig {
        /// The container.
        vmid: Vmid,
        /// KEY=VALUE pairs (the help text, with the allowed keys, is `setconfig::changes_help`).
        #[arg(required = true, value_name = "KEY=VALUE", help = setconfig::changes_help())]
        changes: Vec<String>,
    },
    /// List the storages on this node, or what one holds.
    Storage {
        /// What to do (default: list the storages).
        #[command(subcommand)]
        action: Option<StorageAction>,
    },
    /// Proxmox tasks.
    Tasks {
        /// What to do.
        #[command(subcommand)]
        action: TasksAction,
    },
    /// Golden images (through the helper).
    GoldenImage {
        /// What to do.
        #[command(subcommand)]
        action: GoldenImageAction,
    },
    /// USB disks mounted by filesystem UUID (through the helper).
    Usb {
        /// What to do.
        #[command(subcommand)]
        action: UsbAction,
    },
    /// SMART health of all disks, or of one.
    Smart {
        /// Only this disk (kernel name, e.g. sda or nvme0n1).
        disk: Option<DiskName>,
    },
    /// Hardware sensors.
    Sensors,
    /// Run as the service: collect the health report every interval and write it to the state
    /// directory.
    Run,
}

/// Snapshot subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Create a snapshot.
    Create(SnapshotArgs),
    /// Roll the container back to a snapshot (Proxmox stops a running container for it;
    /// `--start` starts it again afterwards).
    Rollback(RollbackArgs),
    /// Delete a snapshot.
    Delete(SnapshotArgs),
}

/// `snapshot rollback`: a container, a snapshot name, and whether to start it afterwards.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The container and the snapshot.
    #[command(flatten)]
    pub target: SnapshotArgs,
    /// Start the container after the rollback (Proxmox's `start=1`); without it, a container
    /// that was running is left stopped.
    #[arg(long)]
    pub start: bool,
}

/// A container and a snapshot name.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The container.
    pub vmid: Vmid,
    /// The snapshot name.
    pub name: SnapshotName,
}

/// Backup subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Restore drill: restore the newest backup of VMID (or --archive) as a copy into the
    /// scratch vmid N with every network interface disconnected (link_down=1), start it,
    /// check that it stays running for the settle time, then stop and destroy it (also on
    /// failure and on SIGTERM/SIGINT, unless --keep-on-failure). Exit 0 only when it passed.
    /// With --cleanup: remove leftovers of earlier drills (tag felhom-drill, inside the
    /// scratch range).
    Verify(VerifyArgs),
}

/// Arguments of `backup verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The container whose backup is checked.
    #[arg(required_unless_present = "cleanup")]
    pub vmid: Option<Vmid>,
    /// Restore this archive instead of the newest backup of VMID.
    #[arg(long, value_name = "VOLID")]
    pub archive: Option<VolumeId>,
    /// Look for the newest backup only on this storage (default: every active backup
    /// storage).
    #[arg(long, value_name = "S", conflicts_with = "archive")]
    pub storage: Option<StorageId>,
    /// The scratch guest's vmid: free, inside the scratch range (config key
    /// drill_scratch_range, default 9000-9099), not VMID.
    #[arg(long, value_name = "N", required_unless_present = "cleanup")]
    pub scratch_vmid: Option<Vmid>,
    /// Storage for the copy's root filesystem (default: the one VMID's rootfs is on).
    #[arg(long, value_name = "T")]
    pub target_storage: Option<StorageId>,
    /// Leave the scratch guest in place when the drill fails.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Seconds restore, start and settle may take together.
    #[arg(long, value_name = "S", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Seconds the copy must stay running with its uptime growing.
    #[arg(long, value_name = "S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub settle: u64,
    /// Remove leftovers of earlier drills instead (only guests tagged felhom-drill inside the
    /// scratch range).
    #[arg(long, conflicts_with_all = ["vmid", "archive", "storage", "scratch_vmid", "target_storage", "keep_on_failure"])]
    pub cleanup: bool,
}

/// Task subcommands.
#[derive(Debug, Subcommand)]
pub enum TasksAction {
    /// Wait for a task to stop and print its exit status.
    Wait {
        /// The task's UPID.
        upid: Upid,
    },
    /// Recent tasks on this node (running ones first), with status and duration.
    List {
        /// Only tasks of this guest.
        #[arg(long)]
        vmid: Option<Vmid>,
        /// Only tasks of this type (vzdump, vzrestore, vzstart, vzsnapshot, …).
        #[arg(long = "type", value_name = "T")]
        task_type: Option<TaskType>,
        /// Only tasks that did not end OK.
        #[arg(long)]
        errors: bool,
        /// At most this many tasks.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// A task's log.
    Log {
        /// The task's UPID.
        upid: Upid,
        /// Follow the log until the task stops; exit 0 for OK or WARNINGS, 1 for an error.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// Storage subcommands.
#[derive(Debug, Subcommand)]
pub enum StorageAction {
    /// The volumes on a storage: backups, templates, disks.
    Content {
        /// The storage, e.g. local.
        storage: StorageId,
        /// Only this kind of content.
        #[arg(long, value_enum)]
        content: Option<ContentArg>,
    },
}

/// Content kinds for `storage content --content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContentArg {
    /// vzdump backups.
    Backup,
    /// Container templates.
    Vztmpl,
    /// Container volumes.
    Rootdir,
    /// VM disk images.
    Images,
    /// ISO images.
    Iso,
}

/// Golden-image subcommands.
#[derive(Debug, Subcommand)]
pub enum GoldenImageAction {
    /// Create a golden-image container (pct create with keyctl and nesting).
    Create(GoldenImageArgs),
}

/// Arguments of `golden-image create`.
#[derive(Debug, Args)]
pub struct GoldenImageArgs {
    /// The new container's id.
    #[arg(long)]
    pub vmid: Vmid,
    /// The template volume, e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst.
    #[arg(long)]
    pub template: TemplateVolid,
    /// Hostname.
    #[arg(long)]
    pub hostname: Hostname,
    /// Storage for the root filesystem.
    #[arg(long, default_value = "local-lvm")]
    pub storage: felhom_protocol::StorageId,
    /// Root filesystem size, GiB.
    #[arg(long, default_value = "8")]
    pub rootfs_gb: RootfsGib,
    /// Memory, MiB.
    #[arg(long, default_value = "1024")]
    pub memory_mb: MemoryMib,
    /// CPU cores.
    #[arg(long, default_value = "2")]
    pub cores: Cores,
    /// Bridge for net0 (DHCP).
    #[arg(long, default_value = "vmbr0")]
    pub bridge: Bridge,
}

/// USB subcommands.
#[derive(Debug, Subcommand)]
pub enum UsbAction {
    /// Mount the filesystem with this UUID persistently as <mount_root>/NAME.
    Mount {
        /// Filesystem UUID (from blkid).
        uuid: FsUuid,
        /// The mount's name.
        #[arg(long)]
        name: MountName,
    },
    /// Unmount a managed mount and forget it.
    Unmount {
        /// The mount's name.
        name: MountName,
    },
    /// List the managed mounts.
    List,
}

/// vzdump mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Stop the container for a consistent backup.
    Stop,
    /// Live snapshot.
    Snapshot,
}

/// Why a command did not succeed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// A Proxmox API call failed.
    #[error("{0}")]
    Pve(#[from] PveError),
    /// A helper call failed.
    #[error("{0}")]
    Helper(#[from] HelperClientError),
    /// Something else failed.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

/// Whether `--json` is among the raw arguments (before a `--` terminator).
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// Parses the command line. Help and version requests are printed and the process exits 0
/// (clap's behaviour). Any other parse error is a usage error: clap's message goes to stderr
/// and, when `--json` was given, `{"ok":false,"exit_code":2,"error":…}` is written to `out`,
/// so a machine caller always gets a JSON document; the caller exits with the returned code.
pub fn parse_args<I, T>(args: I, out: &mut dyn Write) -> Result<Cli, u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let code = u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE);
            if wants_json(&args) {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first).trim();
                let doc = serde_json::json!({ "ok": false, "exit_code": code, "error": message });
                let _ = writeln!(out, "{doc}");
                let _ = out.flush();
            }
            let _ = e.print();
            Err(code)
        }
    }
}

/// Loads the configuration (`--config`, else the default path, and the FELHOM_* overrides).
fn load_config(cli: &Cli) -> Result<AgentConfig, CliError> {
    Ok(AgentConfig::load(cli.config.as_deref())?)
}

/// A Proxmox API client from the configuration's API settings.
fn pve_client(config: &AgentConfig) -> Result<PveClient, CliError> {
    let settings = config.api_settings()?;
    Ok(PveClient::new(&settings)?)
}

/// Runs one command: the helper-only commands (golden image, usb, smart, sensors) with
/// just the helper's socket from the config, every other one with the full configuration.
async fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    // Commands that only talk to the helper need no API settings, so they work on a host
    // whose agent.json is not written yet.
    let helper_only = || -> Result<HelperClient, CliError> {
        let socket = AgentConfig::load_helper_socket(cli.config.as_deref())?;
        Ok(HelperClient::new(&socket))
    };
    match &cli.command {
        Command::GoldenImage {
            action: GoldenImageAction::Create(args),
        } => return helper_cmds::golden_image(&helper_only()?, args).await,
        Command::Usb { action } => return helper_cmds::usb(&helper_only()?, action).await,
        Command::Smart { disk } => {
            return helper_cmds::smart(&helper_only()?, disk.clone()).await;
        }
        Command::Sensors => return helper_cmds::sensors(&helper_only()?).await,
        _ => {}
    }
    let config = load_config(&cli)?;
    let helper = || HelperClient::new(&config.helper_socket);
    let pm = ProgressMode::detect(cli.quiet, cli.json);
    match &cli.command {
        Command::Selftest { task } => selftest::selftest(&config, &helper(), *task, pm).await,
        Command::Guests => guests::guests(&pve_client(&config)?).await,
        Command::Guest { vmid } => guests::guest(&pve_client(&config)?, *vmid).await,
        Command::Snapshot { action } => guests::snapshot(&pve_client(&config)?, action, pm).await,
        Command::Backup {
            action: Some(BackupAction::Verify(v)),
            ..
        } => {
            let pve = pve_client(&config)?;
            if v.cleanup {
                // The copy of a drill the service has under way is not a leftover.
                let busy = crate::drill::schedule::drill_under_way(
                    &config.state_dir,
                    config.drill.timeout + std::time::Duration::from_secs(3600),
                );
                return drill::cleanup(&pve, config.drill_scratch_range, busy, pm).await;
            }
            let (Some(vmid), Some(scratch)) = (v.vmid, v.scratch_vmid) else {
                return Err(CliError::Usage(
                    "backup verify needs VMID and --scratch-vmid N (or --cleanup)".into(),
                ));
            };
            let args = crate::drill::DrillArgs {
                vmid,
                archive: v.archive.clone(),
                storage: v.storage.clone(),
                scratch,
                target_storage: v.target_storage.clone(),
                keep_on_failure: v.keep_on_failure,
                timeout: std::time::Duration::from_secs(v.timeout),
                settle: std::time::Duration::from_secs(v.settle),
            };
            drill::verify(&pve, &args, config.drill_scratch_range, pm).await
        }
        Command::Backup {
            vmid: Some(vmid),
            storage: Some(storage),
            mode,
            prune,
            action: None,
        } => backup::backup(&pve_client(&config)?, *vmid, storage, *mode, *prune, pm).await,
        Command::Backup { .. } => Err(CliError::Usage("backup needs VMID and --storage S".into())),
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
            backup::restore(&pve_client(&config)?, req, identity, pm).await
        }
        Command::Start { vmid } => power::power(&pve_client(&config)?, *vmid, true, pm).await,
        Command::Stop { vmid } => power::power(&pve_client(&config)?, *vmid, false, pm).await,
        Command::Shutdown {
            vmid,
            timeout,
            force_stop,
        } => power::shutdown(&pve_client(&config)?, *vmid, *timeout, *force_stop, pm).await,
        Command::SetConfig { vmid, changes } => {
            let change = setconfig::parse_changes(changes)?;
            setconfig::set_config(&pve_client(&config)?, *vmid, change).await
        }
        Command::Storage { action: None } => storage::list(&pve_client(&config)?).await,
        Command::Storage {
            action: Some(action),
        } => storage::run(&pve_client(&config)?, action).await,
        Command::Tasks { action } => tasks::run(&pve_client(&config)?, action, cli.json, pm).await,
        Command::GoldenImage { .. }
        | Command::Usb { .. }
        | Command::Smart { .. }
        | Command::Sensors => unreachable_helper_only(),
        Command::Run => {
            let pve = pve_client(&config)?;
            crate::service::run(&config, pve, helper())
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            Ok(Outcome::new(
                &serde_json::json!({ "ok": true }),
                String::new(),
            ))
        }
    }
}

/// The helper-only commands return before the full configuration is loaded.
fn unreachable_helper_only() -> Result<Outcome, CliError> {
    Err(CliError::Failed(
        "internal error: a helper-only command reached the API dispatch".into(),
    ))
}

/// Runs a parsed command line, writing the result to `out`; returns the exit code. Errors are
/// logged to stderr and, with `--json`, also printed as `{"ok":false,"error":…}` on `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> u8 {
    let json = cli.json;
    let result = dispatch(cli).await;
    match result {
        Ok(outcome) => {
            let written = if json {
                serde_json::to_string_pretty(&outcome.json)
                    .map_err(std::io::Error::other)
                    .and_then(|s| writeln!(out, "{s}"))
            } else {
                write!(out, "{}", outcome.human)
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                eprintln!("felhom-agent: cannot write the result: {e}");
                return EXIT_FAILED;
            }
            if outcome.failed { EXIT_FAILED } else { EXIT_OK }
        }
        Err(e) => {
            let code = e.exit_code();
            eprintln!("felhom-agent: error: {e}");
            if json {
                let mut doc =
                    serde_json::json!({ "ok": false, "exit_code": code, "error": e.to_string() });
                if let CliError::Pve(PveError::Task(f)) = &e {
                    doc["task"] = task_output::failure_json(f);
                }
                let _ = writeln!(out, "{doc}");
                let _ = out.flush();
            }
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_usage_errors_print_a_json_document() {
        let mut out = Vec::new();
        let code =
            parse_args(["felhom-agent", "--json", "guest", "notanumber"], &mut out).unwrap_err();
        assert_eq!(code, EXIT_USAGE);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["exit_code"], 2);
        assert!(v["error"].as_str().unwrap().contains("notanumber"), "{v}");
        // Without --json nothing goes to stdout.
        let mut out = Vec::new();
        assert_eq!(
            parse_args(["felhom-agent", "guest", "x"], &mut out).unwrap_err(),
            EXIT_USAGE
        );
        assert!(out.is_empty());
        // An unknown subcommand, --json after it, and a missing subcommand.
        for args in [
            &["felhom-agent", "frobnicate", "--json"][..],
            &["felhom-agent", "--json"][..],
        ] {
            let mut out = Vec::new();
            assert_eq!(parse_args(args, &mut out).unwrap_err(), EXIT_USAGE);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["exit_code"], 2, "{args:?}");
        }
        // `--json` after `--` is not the flag.
        assert!(!wants_json(&["a".into(), "--".into(), "--json".into()]));
    }

    #[test]
    fn selftest_task_needs_a_vmid() {
        let err = Cli::try_parse_from(["felhom-agent", "selftest", "--task"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let ok = Cli::try_parse_from(["felhom-agent", "selftest", "--task", "100"]).unwrap();
        assert!(matches!(ok.command, Command::Selftest { task: Some(v) } if v.get() == 100));
        let err = Cli::try_parse_from(["felhom-agent", "selftest", "--task", "12"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn arguments_are_validated_types() {
        assert!(
            Cli::try_parse_from(["felhom-agent", "usb", "mount", "x;y", "--name", "a"]).is_err()
        );
        assert!(Cli::try_parse_from(["felhom-agent", "usb", "unmount", "../etc"]).is_err());
        assert!(Cli::try_parse_from(["felhom-agent", "smart", "/dev/sda"]).is_err());
        assert!(
            Cli::try_parse_from(["felhom-agent", "snapshot", "create", "100", "current"]).is_err()
        );
        let c = Cli::try_parse_from([
            "felhom-agent",
            "--json",
            "golden-image",
            "create",
            "--vmid",
            "9000",
            "--template",
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "--hostname",
            "golden",
        ])
        .unwrap();
        assert!(c.json);
        match c.command {
            Command::GoldenImage {
                action: GoldenImageAction::Create(a),
            } => {
                assert_eq!(a.storage.as_str(), "local-lvm");
                assert_eq!(a.rootfs_gb.get(), 8);
                assert_eq!(a.bridge.as_str(), "vmbr0");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_commands_parse_into_typed_arguments() {
        let c =
            Cli::try_parse_from(["felhom-agent", "-q", "shutdown", "100", "--force-stop"]).unwrap();
        assert!(c.quiet);
        assert!(matches!(
            c.command,
            Command::Shutdown {
                timeout: 60,
                force_stop: true,
                ..
            }
        ));
        for bad in [
            &["felhom-agent", "shutdown", "100", "--timeout", "0"][..],
            &["felhom-agent", "shutdown", "99"][..],
            &["felhom-agent", "storage", "content", "bad storage"][..],
            &[
                "felhom-agent",
                "storage",
                "content",
                "local",
                "--content",
                "snippets",
            ][..],
            &["felhom-agent", "tasks", "list", "--type", "VZ"][..],
            &["felhom-agent", "tasks", "list", "--limit", "0"][..],
            &["felhom-agent", "tasks", "log", "not-a-upid"][..],
        ] {
            assert_eq!(
                Cli::try_parse_from(bad).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
        let c = Cli::try_parse_from(["felhom-agent", "storage"]).unwrap();
        assert!(matches!(c.command, Command::Storage { action: None }));
        let c = Cli::try_parse_from([
            "felhom-agent",
            "storage",
            "content",
            "local",
            "--content",
            "backup",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Command::Storage {
                action: Some(StorageAction::Content {
                    content: Some(ContentArg::Backup),
                    ..
                })
            }
        ));
        let c = Cli::try_parse_from([
            "felhom-agent",
            "tasks",
            "list",
            "--vmid",
            "100",
            "--type",
            "vzdump",
            "--errors",
        ])
        .unwrap();
        match c.command {
            Command::Tasks {
                action:
                    TasksAction::List {
                        vmid,
                        task_type,
                        errors,
                        limit,
                    },
            } => {
                assert_eq!(vmid.map(|v| v.get()), Some(100));
                assert_eq!(task_type.unwrap().as_str(), "vzdump");
                assert!(errors);
                assert_eq!(limit, 50);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backup_and_backup_verify_parse_side_by_side() {
        let c =
            Cli::try_parse_from(["felhom-agent", "backup", "100", "--storage", "local"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Backup { vmid: Some(v), storage: Some(_), action: None, .. } if v.get() == 100
        ));
        let c = Cli::try_parse_from([
            "felhom-agent",
            "backup",
            "verify",
            "101",
            "--scratch-vmid",
            "9000",
        ])
        .unwrap();
        match c.command {
            Command::Backup {
                action: Some(BackupAction::Verify(v)),
                ..
            } => {
                assert_eq!(v.vmid.map(|x| x.get()), Some(101));
                assert_eq!(v.scratch_vmid.map(|x| x.get()), Some(9000));
                assert_eq!((v.settle, v.timeout, v.cleanup), (30, 3600, false));
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["felhom-agent", "backup", "verify", "--cleanup"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Backup {
                action: Some(BackupAction::Verify(VerifyArgs { cleanup: true, .. })),
                ..
            }
        ));
        for bad in [
            &["felhom-agent", "backup", "100"][..],
            &["felhom-agent", "backup", "--storage", "local"][..],
            &["felhom-agent", "backup", "verify", "101"][..],
            &["felhom-agent", "backup", "verify", "--scratch-vmid", "9000"][..],
            &[
                "felhom-agent",
                "backup",
                "100",
                "--storage",
                "local",
                "verify",
            ][..],
            &[
                "felhom-agent",
                "backup",
                "verify",
                "101",
                "--scratch-vmid",
                "9000",
                "--settle",
                "0",
            ][..],
            &[
                "felhom-agent",
                "backup",
                "verify",
                "101",
                "--scratch-vmid",
                "9000",
                "--archive",
                "local:backup/x.tar",
                "--storage",
                "local",
            ][..],
            &[
                "felhom-agent",
                "backup",
                "verify",
                "--cleanup",
                "--scratch-vmid",
                "9000",
            ][..],
        ] {
            assert_eq!(
                Cli::try_parse_from(bad).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keep_identity_conflicts_with_hostname() {
        let r = Cli::try_parse_from([
            "felhom-agent",
            "restore",
            "local:backup/x.tar.zst",
            "--vmid",
            "200",
            "--storage",
            "local",
            "--hostname",
            "a",
            "--keep-identity",
        ]);
        assert_eq!(r.unwrap_err().exit_code(), 2);
    }
}
