//! felhom's build-time tasks, run as `cargo xtask …` (an alias in `.cargo/config.toml`).
//!
//! `cargo xtask gen-docs --out OUT_DIR` writes the man pages and shell completions of felhom
//! from the clap definitions themselves, so they cannot drift from `--help`:
//!
//! ```text
//! OUT_DIR/man/felhom-agent.1              the agent, with every subcommand listed
//! OUT_DIR/man/felhom-agent-<sub>[-<sub>].1 one page per subcommand (its options in full)
//! OUT_DIR/man/felhom-helper.8             the root helper
//! OUT_DIR/completions/felhom-agent.bash   bash
//! OUT_DIR/completions/_felhom-agent       zsh
//! OUT_DIR/completions/felhom-agent.fish   fish
//! ```
//!
//! `.ci/package.sh` runs it before building the .deb, compresses the pages and ships them in
//! `/usr/share/man/man{1,8}` and the completions in bash-completion's, zsh's and fish's
//! vendor directories. The pages' SEE ALSO names the user documentation the package ships
//! ([`SHIPPED_DOCS`]). The test crate's `man_pages` tests call [`gen_docs`].

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// Where the package installs its user documentation (`docs/*.md` of the repository, beside
/// the README as in the repository, so the README's links resolve).
pub const DOC_DIR: &str = "/usr/share/doc/felhom-agent/docs";

/// The documents the package ships in [`DOC_DIR`], which the man pages point at.
pub const SHIPPED_DOCS: [&str; 4] = ["install.md", "guide.md", "helper.md", "security.md"];

/// `DOC_DIR/name` for a SEE ALSO line.
fn doc(name: &str) -> String {
    format!("{DOC_DIR}/{name}")
}

/// Writes the man pages to `out/man` and the completions to `out/completions` (see the crate
/// documentation), creating the directories.
pub fn gen_docs(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;

    let mut agent = felhom_agent::cli::Cli::command();
    // Propagates the global options (--config, --json) into the subcommands' pages.
    agent.build();
    write_page(&man, agent.clone(), "1", &agent_sections())?;
    subcommand_pages(&man, &agent, "felhom-agent", "felhom-agent")?;
    let helper = felhom_helper::Args::command();
    write_page(&man, helper, "8", &helper_sections())?;

    for (shell, name) in [
        (clap_complete::Shell::Bash, "felhom-agent.bash"),
        (clap_complete::Shell::Zsh, "_felhom-agent"),
        (clap_complete::Shell::Fish, "felhom-agent.fish"),
    ] {
        let mut cmd = agent.clone();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "felhom-agent", &mut buf);
        std::fs::write(comp.join(name), buf)?;
    }
    Ok(())
}

/// One page per subcommand, recursively: `felhom-agent-snapshot-create.1` and so on.
fn subcommand_pages(
    dir: &Path,
    parent: &clap::Command,
    prefix: &str,
    invocation: &str,
) -> std::io::Result<()> {
    for sub in parent.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("{prefix}-{}", sub.get_name());
        let call = format!("{invocation} {}", sub.get_name());
        let cmd = sub.clone().name(name.clone()).bin_name(call.clone());
        let see_also = Roff::new()
            .control("SH", ["SEE ALSO"])
            .text([bold("felhom-agent"), roman("(1), "), roman(doc("guide.md"))])
            .to_roff();
        write_page(dir, cmd.clone(), "1", &see_also)?;
        subcommand_pages(dir, sub, &name, &call)?;
    }
    Ok(())
}

/// Renders `cmd` as `NAME.SECTION` with the sections clap knows plus `extra` (roff) before
/// the version.
fn write_page(dir: &Path, cmd: clap::Command, section: &str, extra: &str) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .title(cmd.get_name().to_uppercase())
        .section(section)
        .manual("felhom")
        .source(format!("felhom {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    page.render_title(&mut buf)?;
    page.render_name_section(&mut buf)?;
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut buf)?;
    }
    if cmd.has_subcommands() {
        page.render_subcommands_section(&mut buf)?;
    }
    buf.write_all(extra.as_bytes())?;
    if cmd.get_version().is_some() {
        page.render_version_section(&mut buf)?;
    }
    std::fs::write(dir.join(page.get_filename()), buf)
}

fn agent_sections() -> String {
    Roff::new()
        .control("SH", ["EXIT STATUS"])
        .control("TP", [])
        .text([bold("0")])
        .text([roman("Success.")])
        .control("TP", [])
        .text([bold("1")])
        .text([roman(
            "The operation failed, or the health report is degraded (a disk whose SMART \
             self-assessment failed, Proxmox or the helper unreachable).",
        )])
        .control("TP", [])
        .text([bold("2")])
        .text([roman("Usage or configuration error.")])
        .control("SH", ["ENVIRONMENT"])
        .control("TP", [])
        .text([bold("FELHOM_*")])
        .text([roman(
            "Every configuration key can be overridden by an environment variable, e.g. \
             FELHOM_API_URL.",
        )])
        .control("TP", [])
        .text([bold("RUST_LOG")])
        .text([roman(
            "Log filter (default: info for run, warn otherwise). Logs go to stderr; under \
             systemd straight to the journal with FELHOM_* fields.",
        )])
        .control("SH", ["FILES"])
        .control("TP", [])
        .text([italic("/etc/felhom/agent.json")])
        .text([roman("The configuration.")])
        .control("TP", [])
        .text([italic("/var/lib/felhom-agent/health.json")])
        .text([roman("The health report written by run after each cycle.")])
        .control("TP", [])
        .text([italic("/var/lib/felhom-agent/felhom-agent.prom")])
        .text([roman(
            "Prometheus metrics written by run after each cycle (metrics_file), for the \
             node_exporter textfile collector.",
        )])
        .control("SH", ["SEE ALSO"])
        .text([
            bold("felhom-helper"),
            roman("(8), "),
            bold("journalctl"),
            roman("(1), "),
            bold("smartctl"),
            roman("(8), "),
            roman(doc("install.md")),
            roman(", "),
            roman(doc("guide.md")),
            roman(", "),
            roman(doc("helper.md")),
            roman(", "),
            roman(doc("security.md")),
        ])
        .to_roff()
}

fn helper_sections() -> String {
    Roff::new()
        .control("SH", ["OPERATION"])
        .text([roman(
            "Started by systemd for felhom-helper.socket (/run/felhom/helper.sock). It serves \
             only root and the agent's user, one privileged operation at a time: golden-image \
             pct create, USB mounts by filesystem UUID, SMART and sensors. It exits when idle.",
        )])
        .control("SH", ["AUDIT"])
        .text([
            roman(
                "Every privileged operation and every refused connection is logged as an audit \
                 record. Under systemd it is a journal entry with MESSAGE_ID=",
            ),
            bold(felhom_helper::logging::AUDIT_MESSAGE_ID),
            roman(
                " and the fields FELHOM_OP, FELHOM_PEER_UID, FELHOM_PEER_PID, FELHOM_REQUEST, \
                 FELHOM_OUTCOME, FELHOM_DURATION_MS and FELHOM_SEQ (refused connections: \
                 FELHOM_PEER_GID and FELHOM_REFUSED), e.g.",
            ),
        ])
        .control("IP", [])
        .text([bold(
            "journalctl -u felhom-helper.service FELHOM_OP=usb_mount",
        )])
        .control("SH", ["FILES"])
        .control("TP", [])
        .text([italic("/etc/felhom/helper.json")])
        .text([roman(
            "The configuration (root-owned, not writable by others).",
        )])
        .control("SH", ["SEE ALSO"])
        .text([
            bold("felhom-agent"),
            roman("(1), "),
            bold("systemd.socket"),
            roman("(5), "),
            bold("journalctl"),
            roman("(1), "),
            roman(doc("helper.md")),
            roman(", "),
            roman(doc("security.md")),
        ])
        .to_roff()
}
