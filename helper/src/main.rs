//! felhom-helper: the socket-activated root helper. See the library for the details.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = felhom_helper::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .init();
    match felhom_helper::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("felhom-helper: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
