//! felhom-helper: the socket-activated root helper. See the library for the details.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = felhom_helper::Args::from_env();
    // Journal entries with fields under systemd, plain lines on stderr elsewhere.
    felhom_helper::logging::init();
    let code = match felhom_helper::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("felhom-helper: {e}");
            ExitCode::from(e.exit_code())
        }
    };
    // The journal writer may still hold the last records (the exit's summaries).
    felhom_helper::logging::flush(std::time::Duration::from_secs(2));
    code
}
