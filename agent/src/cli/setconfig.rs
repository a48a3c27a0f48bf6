//! `set-config`: the arguments through the typed allowlist, the PUT, then what Proxmox really
//! did — which changes are applied and which wait in `…/pending` until the container's next
//! start.

use felhom_protocol::Vmid;
use serde_json::json;

use super::CliError;
use super::output::Outcome;
use crate::pve::GuestState;
use crate::pve::pending::{split_applied, split_read_at_start};
use crate::pve::{ConfigChange, ConfigKey, PveClient, PveError, allowed_config_keys};

/// Proxmox's refusal of a `PUT …/config` whose `digest` no longer matches the config
/// (pve-guest-common `PVE::AbstractConfig::assert_if_modified`).
const MODIFIED_MARKER: &str = "detected modified configuration";

/// Says what the digest refusal means: the config changed between the agent's read and
/// its write, and nothing was changed.
fn explain_modified(e: PveError, vmid: Vmid, digest: &str) -> CliError {
    let text = e.to_string();
    if !text.contains(MODIFIED_MARKER) {
        return e.into();
    }
    CliError::Failed(format!(
        "{text}\nCT {vmid}'s configuration changed after felhom-agent read it (digest {digest}), so Proxmox refused the change and nothing was written; look at the configuration as it is now, then run set-config again."
    ))
}

/// Changes allowed keys (digest-guarded), then reads `…/pending` to report the changes that
/// are applied and those that wait for a restart; of the applied ones, those a running
/// container reads only at start (`hostname`) are reported as `at_next_start`. When `pending` cannot be read, the output
/// says so (`pending_known: false`) instead of claiming either.
pub(super) async fn set_config(
    pve: &PveClient,
    vmid: Vmid,
    changes: Vec<(ConfigKey, String)>,
) -> Result<Outcome, CliError> {
    let current = pve.container_config(vmid).await?;
    let mut change = ConfigChange::new();
    if !current.digest.is_empty() {
        change = change
            .digest(&current.digest)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    let mut shown = Vec::new();
    let mut keys = Vec::new();
    for (k, v) in changes {
        shown.push(format!("{k}={v}"));
        keys.push(k.to_string());
        change = change
            .set(k, v)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    pve.set_config(vmid, &change)
        .await
        .map_err(|e| explain_modified(e, vmid, &current.digest))?;
    let with_value = |names: &[&str]| -> Vec<String> {
        keys.iter()
            .zip(&shown)
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, s)| s.clone())
            .collect()
    };
    match pve.pending(vmid).await {
        Ok(entries) => {
            let (applied, pending) = split_applied(&keys, &entries);
            // Whether the CT runs decides whether a key read only at start is in effect;
            // when the state cannot be read, the agent does not claim it is.
            let running = match pve.container_status(vmid).await {
                Ok(s) => s.status != GuestState::Stopped,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the container's state after set-config");
                    true
                }
            };
            let (applied, at_start) = split_read_at_start(&applied, running);
            let applied = with_value(&applied);
            let at_start = with_value(&at_start);
            let pending = with_value(&pending);
            let mut human = format!("CT {vmid}: set {}\n", shown.join(" "));
            if !applied.is_empty() {
                human.push_str(&format!("applied now: {}\n", applied.join(" ")));
            }
            if !at_start.is_empty() {
                human.push_str(&format!(
                    "in the configuration now, but the running container takes it at its next start: {}\n",
                    at_start.join(" ")
                ));
            }
            if !pending.is_empty() {
                human.push_str(&format!(
                    "pending until the container's next start (Proxmox keeps them in …/pending): {}\n",
                    pending.join(" ")
                ));
            }
            Ok(Outcome::new(
                &json!({ "ok": true, "vmid": vmid, "set": shown, "applied": applied, "at_next_start": at_start, "pending": pending, "pending_known": true }),
                human,
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "config changed, but its pending changes could not be read");
            Ok(Outcome::new(
                &json!({ "ok": true, "vmid": vmid, "set": shown, "applied": null, "at_next_start": null, "pending": null, "pending_known": false }),
                format!(
                    "CT {vmid}: set {} (could not read …/pending: {e}; whether each change is applied now or at the next start is unknown)\n",
                    shown.join(" ")
                ),
            ))
        }
    }
}

/// The help of `set-config`'s KEY=VALUE arguments: the allowed keys, from the one table
/// ([`crate::pve::CONFIG_KEY_NAMES`]).
pub(super) fn changes_help() -> String {
    format!("KEY=VALUE pairs. Allowed keys: {}", allowed_config_keys())
}

/// Parses `KEY=VALUE` arguments through the typed allowlist; any problem is a usage error.
pub fn parse_changes(changes: &[String]) -> Result<Vec<(ConfigKey, String)>, CliError> {
    let mut out = Vec::new();
    let allowed = allowed_config_keys();
    for c in changes {
        let Some((k, v)) = c.split_once('=') else {
            return Err(CliError::Usage(format!(
                "{c:?} is not KEY=VALUE (allowed keys: {allowed})"
            )));
        };
        let key: ConfigKey = k.parse().map_err(|_| {
            CliError::Usage(format!(
                "config key {k:?} is not allowed (allowed keys: {allowed})"
            ))
        })?;
        key.check_value(v)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if out.iter().any(|(seen, _)| *seen == key) {
            return Err(CliError::Usage(format!("config key {k} given twice")));
        }
        out.push((key, v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::{CONFIG_KEY_NAMES, ConfigKeyName};
    use clap::CommandFactory;

    /// The words of `text` that name config keys, in order (`net0..net31` is one word).
    fn key_words(text: &str) -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || c == ',')
            .map(|w| w.trim_matches(|c: char| c == '.' && !w.contains("..")))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_cli_help_lists_exactly_the_allowed_keys() {
        let mut cli = super::super::Cli::command();
        let sub = cli.find_subcommand_mut("set-config").unwrap();
        let help = sub
            .get_arguments()
            .find(|a| a.get_id() == "changes")
            .and_then(|a| a.get_help())
            .unwrap()
            .to_string();
        let (_, list) = help.split_once("Allowed keys:").unwrap();
        let expected: Vec<String> = CONFIG_KEY_NAMES.iter().map(|k| k.help_form()).collect();
        assert_eq!(key_words(list), expected, "{help}");
        // The rendered help carries the list too.
        let rendered = sub.render_long_help().to_string();
        for k in &expected {
            assert!(rendered.contains(k.as_str()), "{k} not in: {rendered}");
        }
    }

    /// Every place in README.md and docs/*.md that lists `set-config`'s allowed keys (a line
    /// naming `set-config` with "allowed keys" and the list in backticks after it) lists
    /// exactly the table, in its order.
    #[test]
    fn the_docs_list_exactly_the_allowed_keys() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md")];
        if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
            files.extend(
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "md")),
            );
        }
        let expected: Vec<String> = CONFIG_KEY_NAMES
            .iter()
            .map(|k: &ConfigKeyName| k.docs_form())
            .collect();
        let mut lists = 0;
        for file in &files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for line in text.lines().filter(|l| l.contains("`set-config")) {
                let Some((_, after)) = line.split_once("allowed keys") else {
                    continue;
                };
                let list = after
                    .split('`')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{}: no `…` key list in {line}", file.display()));
                assert_eq!(key_words(list), expected, "{}: {line}", file.display());
                lists += 1;
            }
        }
        assert!(lists > 0, "no set-config key list found in {files:?}");
    }

    #[test]
    fn set_config_arguments_go_through_the_allowlist() {
        let ok =
            parse_changes(&["memory=2048".into(), "net0=name=eth0,bridge=vmbr0".into()]).unwrap();
        assert_eq!(ok[0], (ConfigKey::Memory, "2048".into()));
        assert_eq!(ok[1].0, ConfigKey::Net(0));
        for bad in [
            "features=keyctl=1",
            "memory",
            "memory=lots",
            "lxc.cap.drop=x",
        ] {
            let e = parse_changes(&[bad.into()]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        let e = parse_changes(&["hookscript=local:snippets/x".into()]).unwrap_err();
        assert!(e.to_string().contains("allowed keys"), "{e}");
        assert!(parse_changes(&["cores=1".into(), "cores=2".into()]).is_err());
    }
}
