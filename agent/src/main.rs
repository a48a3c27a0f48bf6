//! `felhom-agent`: a thin wrapper over [`felhom_agent::cli`].

use std::process::ExitCode;

use felhom_agent::cli::{self, Command, EXIT_FAILED};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Usage errors print clap's message (stderr) and exit 2; with --json also a JSON
    // document on stdout.
    let args = match cli::parse_args(std::env::args_os(), &mut std::io::stdout().lock()) {
        Ok(args) => args,
        Err(code) => return ExitCode::from(code),
    };
    // Logs go to stderr only; stdout carries the result. The service logs at info by default,
    // one-shot commands only warnings (RUST_LOG overrides both). tarpc's own "connection
    // broken" warning is normal when the helper exits idle; the helper client reports what
    // matters.
    let default = if matches!(args.command, Command::Run) {
        "info,tarpc=error"
    } else {
        "warn,tarpc=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Journal entries with fields under systemd; colour only on a terminal.
    felhom_agent::logging::init(filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("felhom-agent: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(async {
        let mut out = std::io::stdout().lock();
        cli::run(args, &mut out).await
    });
    ExitCode::from(code)
}
