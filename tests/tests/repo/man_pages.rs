//! The man pages and shell completions that `cargo xtask gen-docs` renders from the clap
//! definitions: one page per command and subcommand with every option, valid roff (when
//! groff is installed), completions that know every subcommand and parse in their shells
//! (when installed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

fn generate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    felhom_xtask::gen_docs(dir.path()).unwrap();
    dir
}

/// Every long option and positional of `cmd` appears in its page (roff escapes `-` as `\-`).
fn assert_page_covers(page: &str, cmd: &clap::Command, file: &str) {
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            let needle = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(page.contains(&needle), "{file} lacks {needle}");
        } else if arg.is_positional() {
            let name = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map_or_else(|| arg.get_id().as_str().to_uppercase(), |v| v.to_string());
            assert!(page.contains(&name), "{file} lacks <{name}>");
        }
    }
    if let Some(about) = cmd.get_about() {
        let first = about.to_string();
        let first = first
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        // roff writes '-' as \- and an apostrophe as the string \*(Aq.
        let text = page.replace("\\-", "-").replace("\\*(Aq", "'");
        assert!(
            text.contains(&first),
            "{file} lacks the about text {first:?}"
        );
    }
}

fn walk(dir: &Path, cmd: &clap::Command, name: &str, pages: &mut Vec<String>) {
    let file = format!("{name}.1");
    let page = std::fs::read_to_string(dir.join(&file))
        .unwrap_or_else(|e| panic!("missing man page {file}: {e}"));
    assert_page_covers(&page, cmd, &file);
    pages.push(file);
    for sub in cmd.get_subcommands() {
        if sub.get_name() != "help" {
            walk(dir, sub, &format!("{name}-{}", sub.get_name()), pages);
        }
    }
}

#[test]
fn every_command_and_option_has_its_man_page() {
    let out = generate();
    let man = out.path().join("man");
    let mut agent = felhom_agent::cli::Cli::command();
    agent.build();
    let mut pages = Vec::new();
    walk(&man, &agent, "felhom-agent", &mut pages);
    let top = std::fs::read_to_string(man.join("felhom-agent.1")).unwrap();
    for sub in agent.get_subcommands() {
        let name = sub.get_name().replace('-', "\\-");
        assert!(top.contains(&name), "felhom-agent.1 does not list {name}");
    }
    assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");

    let helper_cmd = felhom_helper::Args::command();
    let helper = std::fs::read_to_string(man.join("felhom-helper.8")).unwrap();
    assert!(helper.starts_with(".ie") || helper.contains(".TH FELHOM-HELPER 8"));
    assert_page_covers(&helper, &helper_cmd, "felhom-helper.8");
    assert!(helper.contains(felhom_helper::logging::AUDIT_MESSAGE_ID));
    pages.push("felhom-helper.8".into());

    // Nothing else was written: a stale page for a removed subcommand would be shipped.
    let mut written: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    pages.sort();
    assert_eq!(written, pages);

    // Valid roff: groff with all warnings on (-k: UTF-8 input, as man-db feeds it).
    if Path::new("/usr/bin/groff").exists() {
        for p in &pages {
            let out = Command::new("groff")
                .args(["-k", "-t", "-man", "-ww", "-z"])
                .arg(man.join(p))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && stderr.is_empty(), "{p}: {stderr}");
        }
    } else {
        eprintln!("skipping the roff check: groff is not installed");
    }
}

/// Every page's SEE ALSO points at the user documentation the package ships in
/// /usr/share/doc/felhom-agent/docs (not at the README, which only introduces them); the
/// agent's page names all of it.
#[test]
fn see_also_points_at_the_shipped_docs() {
    let out = generate();
    let man = out.path().join("man");
    let mut pages = 0;
    for entry in std::fs::read_dir(&man).unwrap() {
        let path = entry.unwrap().path();
        let page = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        // roff writes '-' as \-.
        let see_also = page
            .split(".SH \"SEE ALSO\"")
            .nth(1)
            .unwrap_or_else(|| panic!("{file} has no SEE ALSO"))
            .replace("\\-", "-");
        assert!(!see_also.contains("README"), "{file}: {see_also}");
        let named: Vec<&str> = felhom_xtask::SHIPPED_DOCS
            .iter()
            .copied()
            .filter(|d| see_also.contains(&format!("{}/{d}", felhom_xtask::DOC_DIR)))
            .collect();
        assert!(!named.is_empty(), "{file} names no shipped doc: {see_also}");
        if file == "felhom-agent.1" {
            assert_eq!(named, felhom_xtask::SHIPPED_DOCS, "{see_also}");
        }
        pages += 1;
    }
    assert!(pages > 2, "{pages} pages");
}

/// The documents the man pages name are the ones the package ships, at the path they name:
/// each of `SHIPPED_DOCS` is an asset of the .deb (`agent/Cargo.toml`) installed in `DOC_DIR`.
#[test]
fn the_documents_the_pages_name_are_shipped_there() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/Cargo.toml"),
    )
    .unwrap();
    let dir = felhom_xtask::DOC_DIR.trim_start_matches('/');
    for doc in felhom_xtask::SHIPPED_DOCS {
        let asset = format!("[\"../docs/{doc}\", \"{dir}/{doc}\", \"644\"]");
        assert!(
            manifest.contains(&asset),
            "agent/Cargo.toml does not ship {asset}"
        );
    }
}

#[test]
fn completions_know_every_subcommand_and_parse() {
    let out = generate();
    let comp = out.path().join("completions");
    let agent = felhom_agent::cli::Cli::command();
    let bash = std::fs::read_to_string(comp.join("felhom-agent.bash")).unwrap();
    let zsh = std::fs::read_to_string(comp.join("_felhom-agent")).unwrap();
    let fish = std::fs::read_to_string(comp.join("felhom-agent.fish")).unwrap();
    assert!(zsh.starts_with("#compdef felhom-agent"), "{zsh}");
    assert!(bash.contains("complete -F _felhom-agent") || bash.contains("complete "));
    for sub in agent.get_subcommands() {
        let name = sub.get_name();
        assert!(bash.contains(name), "bash completion lacks {name}");
        assert!(zsh.contains(name), "zsh completion lacks {name}");
        assert!(
            fish.contains(&format!("-a \"{name}\"")),
            "fish completion lacks {name}"
        );
    }
    for (shell, file) in [("bash", "felhom-agent.bash"), ("zsh", "_felhom-agent")] {
        if let Some(bin) = ["/usr/bin/", "/bin/"]
            .iter()
            .map(|d| Path::new(d).join(shell))
            .find(|p| p.exists())
        {
            let out = Command::new(bin)
                .arg("-n")
                .arg(comp.join(file))
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell} -n {file}: {out:?}");
        } else {
            eprintln!("skipping the {shell} syntax check: {shell} is not installed");
        }
    }
}
