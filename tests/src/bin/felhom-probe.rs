//! felhom-probe: connects to a helper socket and calls `hello`. Used by the peer-check test,
//! which runs it as another user through `setpriv`.
//!
//! Exit status: 0 and `ok <helper version>` when the helper answered; 1 and `refused: …`
//! when the connection was dropped or the call failed; 2 on usage errors.
//!
//! `felhom-probe SOCKET --flood SECS` instead connects and closes again, as fast as it can,
//! for SECS seconds (at most 60), and prints `connections N` (the audit-flood test).

use std::process::ExitCode;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: felhom-probe SOCKET");
        return ExitCode::from(2);
    };
    let mut rest = std::env::args().skip(2);
    if rest.next().as_deref() == Some("--flood") {
        let secs: u64 = rest
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
            .min(60);
        let until = std::time::Instant::now() + Duration::from_secs(secs);
        let mut n = 0u64;
        while std::time::Instant::now() < until {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                n += 1;
            }
        }
        println!("connections {n}");
        return ExitCode::SUCCESS;
    }
    let stream = match tokio::net::UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e) => {
            println!("refused: connect: {e}");
            return ExitCode::from(1);
        }
    };
    let client = felhom_protocol::HelperClient::new(
        tarpc::client::Config::default(),
        felhom_protocol::transport::client_transport(stream),
    )
    .spawn();
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(5);
    match client.hello(ctx, felhom_protocol::PROTOCOL_VERSION).await {
        Ok(Ok(reply)) => {
            println!("ok {}", reply.helper_version);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("refused: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("refused: {e}");
            ExitCode::from(1)
        }
    }
}
