//! `storage` (the storages on this node) and `storage content STORAGE [--content KIND]`.

use serde_json::json;

use super::output::{Outcome, Table, bytes, opt, utc};
use super::{CliError, ContentArg, StorageAction};
use crate::pve::tasklog::clean_line;
use crate::pve::{ContentKind, PveClient};

impl ContentArg {
    fn kind(self) -> ContentKind {
        match self {
            ContentArg::Backup => ContentKind::Backup,
            ContentArg::Vztmpl => ContentKind::Vztmpl,
            ContentArg::Rootdir => ContentKind::Rootdir,
            ContentArg::Images => ContentKind::Images,
            ContentArg::Iso => ContentKind::Iso,
        }
    }
}

/// Runs a `storage` subcommand.
pub(super) async fn run(pve: &PveClient, action: &StorageAction) -> Result<Outcome, CliError> {
    match action {
        StorageAction::Content { storage, content } => {
            let mut list = pve
                .storage_content(storage, content.map(ContentArg::kind))
                .await?;
            // Newest first within each content kind.
            list.sort_by(|a, b| {
                a.content
                    .cmp(&b.content)
                    .then(b.ctime.cmp(&a.ctime))
                    .then(a.volid.cmp(&b.volid))
            });
            let mut t = Table::new(&[
                "VOLID",
                "CONTENT",
                "FORMAT",
                "SIZE",
                "CREATED (UTC)",
                "VMID",
                "PROTECTED",
                "NOTES",
            ]);
            for e in &list {
                let backup = e.content == "backup";
                t.row(vec![
                    clean_line(&e.volid),
                    clean_line(&e.content),
                    clean_line(&e.format),
                    match (e.size, e.approximate_size) {
                        (Some(n), _) => bytes(n),
                        (None, Some(n)) => format!("~{}", bytes(n)),
                        (None, None) => "-".to_string(),
                    },
                    opt(e.ctime.map(utc)),
                    opt(e.vmid),
                    if backup {
                        if e.protected { "yes" } else { "no" }.to_string()
                    } else {
                        "-".to_string()
                    },
                    opt(e.notes.as_deref().map(clean_line)),
                ]);
            }
            let empty = format!(
                "no {}volumes on {storage}",
                content.map_or(String::new(), |c| format!("{} ", c.kind().as_str()))
            );
            Ok(Outcome::new(
                &json!({ "storage": storage.as_str(), "content": content.map(|c| c.kind().as_str()), "volumes": list }),
                t.render(&empty),
            ))
        }
    }
}

/// `felhom-agent storage`: the storages on this node.
pub(super) async fn list(pve: &PveClient) -> Result<Outcome, CliError> {
    let list = pve.storages().await?;
    let mut t = Table::new(&["STORAGE", "TYPE", "ACTIVE", "USED", "TOTAL", "CONTENT"]);
    for s in &list {
        t.row(vec![
            s.storage.clone(),
            s.storage_type.clone(),
            if s.active { "yes" } else { "no" }.into(),
            opt(s.used.map(bytes)),
            opt(s.total.map(bytes)),
            s.content.clone(),
        ]);
    }
    Ok(Outcome::new(&list, t.render("no storages")))
}
