//! `cargo xtask TASK`: felhom's build-time tasks (see the library documentation).
//!
//! - `gen-docs --out DIR`: the man pages and shell completions.
//!
//! Exit status 0, 1 with the reason on stderr when a task fails, 2 for a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// felhom's build-time tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Render the man pages (OUT/man) and shell completions (OUT/completions).
    GenDocs {
        /// The directory to write into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.task {
        Task::GenDocs { out } => match felhom_xtask::gen_docs(out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cargo xtask gen-docs: {}: {e}", out.display());
                ExitCode::from(1)
            }
        },
    }
}
