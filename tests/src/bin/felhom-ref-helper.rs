//! felhom-ref-helper: the floor of the helper's design, for the `helper_rpc` benchmark.
//!
//! A minimal tarpc server of the same `Helper` service, over the project's own transport
//! (`felhom_protocol::transport`, bincode, the same frame limits and deadline check), on a
//! current-thread runtime, with the same crate versions: `hello` answers, every other method
//! says it is unavailable. No peer check, no configuration, no logging, no bookkeeping — what
//! the real helper costs beyond this is what its safety and policy cost.
//!
//! `felhom-ref-helper` takes its socket from systemd (`LISTEN_FDS=1`, fd 3, as
//! `systemd-socket-activate` passes it) or binds `--listen PATH`.

use std::os::fd::FromRawFd;

use felhom_protocol::{
    DiskInfo, DiskName, GoldenImageReply, GoldenImageRequest, HelloReply, Helper, HelperError,
    MountBackend, MountInfo, MountName, PROTOCOL_VERSION, SensorReading, SmartReport, UnmountReply,
    UsbMountRequest,
};
use futures::StreamExt;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};

#[derive(Clone)]
struct Reference;

fn unavailable<T>() -> Result<T, HelperError> {
    Err(HelperError::Unavailable {
        what: "the reference server only answers hello".into(),
    })
}

impl Helper for Reference {
    async fn hello(self, _: Context, agent_protocol: u32) -> Result<HelloReply, HelperError> {
        if agent_protocol != PROTOCOL_VERSION {
            return Err(HelperError::VersionMismatch {
                helper: PROTOCOL_VERSION,
                agent: agent_protocol,
            });
        }
        Ok(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            helper_version: "reference".into(),
            capabilities: Vec::new(),
            mount_backend: MountBackend::Direct,
        })
    }
    async fn golden_image_create(
        self,
        _: Context,
        _: GoldenImageRequest,
    ) -> Result<GoldenImageReply, HelperError> {
        unavailable()
    }
    async fn usb_mount(self, _: Context, _: UsbMountRequest) -> Result<MountInfo, HelperError> {
        unavailable()
    }
    async fn usb_unmount(self, _: Context, _: MountName) -> Result<UnmountReply, HelperError> {
        unavailable()
    }
    async fn usb_list(self, _: Context) -> Result<Vec<MountInfo>, HelperError> {
        unavailable()
    }
    async fn smart_scan(self, _: Context) -> Result<Vec<DiskInfo>, HelperError> {
        unavailable()
    }
    async fn smart_read(self, _: Context, _: DiskName) -> Result<SmartReport, HelperError> {
        unavailable()
    }
    async fn sensors_read(self, _: Context) -> Result<Vec<SensorReading>, HelperError> {
        unavailable()
    }
}

fn listener() -> std::io::Result<std::os::unix::net::UnixListener> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--listen") {
        let path = args
            .next()
            .ok_or_else(|| std::io::Error::other("--listen needs a path"))?;
        return std::os::unix::net::UnixListener::bind(path);
    }
    if std::env::var("LISTEN_FDS").as_deref() != Ok("1") {
        return Err(std::io::Error::other(
            "no socket: run under systemd-socket-activate or give --listen PATH",
        ));
    }
    // SAFETY: systemd passes the listening socket as fd 3 (LISTEN_FDS=1); nothing else in
    // this process owns it.
    Ok(unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) })
}

fn main() -> std::process::ExitCode {
    let std_listener = match listener() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("felhom-ref-helper: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("felhom-ref-helper: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let Ok(()) = std_listener.set_nonblocking(true) else {
            return;
        };
        let Ok(listener) = tokio::net::UnixListener::from_std(std_listener) else {
            return;
        };
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let transport = felhom_protocol::transport::server_transport(stream);
                BaseChannel::with_defaults(transport)
                    .execute(Reference.serve())
                    .for_each(|request| async move {
                        tokio::spawn(request);
                    })
                    .await;
            });
        }
    });
    std::process::ExitCode::SUCCESS
}
