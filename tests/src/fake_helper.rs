//! An in-process fake of the root helper: a tarpc server implementing the same
//! [`felhom_protocol::Helper`] trait over a Unix socket in a temporary directory. It records
//! every typed request and answers with scripted results or errors, so tests can check that
//! the agent sends exactly the expected requests and shows every helper error clearly.
//!
//! It can also drop the connection in the middle of a call (as a crashing helper would), and
//! answer `hello` with another protocol version.
//!
//! [`write_agent_config`] writes an agent config pointing at a [`PveSim`] and a helper socket;
//! the end-to-end tests and the sandbox share it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use felhom_protocol::transport::server_transport;
use felhom_protocol::*;
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::pve_sim::PveSim;

/// One request the fake received, with its typed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `hello(agent_protocol)`.
    Hello(u32),
    /// `golden_image_create(req)`.
    GoldenImageCreate(GoldenImageRequest),
    /// `usb_mount(req)`.
    UsbMount(UsbMountRequest),
    /// `usb_unmount(name)`.
    UsbUnmount(MountName),
    /// `usb_list()`.
    UsbList,
    /// `smart_scan()`.
    SmartScan,
    /// `smart_read(disk)`.
    SmartRead(DiskName),
    /// `sensors_read()`.
    SensorsRead,
}

impl Call {
    /// The method this call is of.
    pub fn method(&self) -> Method {
        match self {
            Call::Hello(_) => Method::Hello,
            Call::GoldenImageCreate(_) => Method::GoldenImageCreate,
            Call::UsbMount(_) => Method::UsbMount,
            Call::UsbUnmount(_) => Method::UsbUnmount,
            Call::UsbList => Method::UsbList,
            Call::SmartScan => Method::SmartScan,
            Call::SmartRead(_) => Method::SmartRead,
            Call::SensorsRead => Method::SensorsRead,
        }
    }
}

/// The service's methods, for scripting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `hello`.
    Hello,
    /// `golden_image_create`.
    GoldenImageCreate,
    /// `usb_mount`.
    UsbMount,
    /// `usb_unmount`.
    UsbUnmount,
    /// `usb_list`.
    UsbList,
    /// `smart_scan`.
    SmartScan,
    /// `smart_read`.
    SmartRead,
    /// `sensors_read`.
    SensorsRead,
}

/// What the fake does instead of its normal answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer with this error.
    Error(HelperError),
    /// Close the connection without answering (a helper that died mid-call).
    Crash,
    /// Wait this long, then answer normally.
    Delay(Duration),
}

/// A canned disk: what `smart_scan` lists and what `smart_read` returns for it.
#[derive(Debug, Clone)]
pub struct FakeDisk {
    /// The scan entry.
    pub info: DiskInfo,
    /// smartctl's exit status.
    pub exit_status: u8,
    /// smartctl's JSON.
    pub json: String,
}

/// A small, healthy ATA disk's smartctl JSON (written for these tests).
pub fn healthy_ata_json(model: &str, serial: &str, temp: i64) -> String {
    serde_json::json!({
        "json_format_version": [1, 0],
        "smartctl": { "version": [7, 3], "exit_status": 0 },
        "device": { "name": "/dev/sda", "info_name": "/dev/sda [SAT]", "type": "sat", "protocol": "ATA" },
        "model_name": model,
        "serial_number": serial,
        "firmware_version": "FW1",
        "smart_status": { "passed": true },
        "temperature": { "current": temp },
        "power_on_time": { "hours": 1234 },
        "ata_smart_attributes": { "revision": 16, "table": [
            { "id": 5, "name": "Reallocated_Sector_Ct", "value": 100, "worst": 100, "thresh": 10, "when_failed": "", "raw": { "value": 0, "string": "0" } },
            { "id": 197, "name": "Current_Pending_Sector", "value": 100, "worst": 100, "thresh": 0, "when_failed": "", "raw": { "value": 0, "string": "0" } }
        ]}
    })
    .to_string()
}

#[derive(Debug)]
struct Inner {
    calls: Vec<Call>,
    script: HashMap<Method, VecDeque<Scripted>>,
    hello_version: u32,
    disks: Vec<FakeDisk>,
    mounts: Vec<MountInfo>,
    connections: usize,
}

#[derive(Debug, Clone)]
struct Server {
    inner: Arc<Mutex<Inner>>,
    /// Notified to drop this connection.
    kill: Arc<Notify>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    /// Records the call, then applies the script for its method. `Ok(())` means: answer
    /// normally.
    async fn enter(&self, call: Call) -> Result<(), HelperError> {
        let method = call.method();
        let scripted = {
            let mut inner = lock(&self.inner);
            inner.calls.push(call);
            inner.script.get_mut(&method).and_then(VecDeque::pop_front)
        };
        match scripted {
            None => Ok(()),
            Some(Scripted::Error(e)) => Err(e),
            Some(Scripted::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Scripted::Crash) => {
                self.kill.notify_one();
                // The connection task is dropped, and this handler with it.
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

impl Helper for Server {
    async fn hello(
        self,
        _: tarpc::context::Context,
        agent_protocol: u32,
    ) -> Result<HelloReply, HelperError> {
        self.enter(Call::Hello(agent_protocol)).await?;
        let version = lock(&self.inner).hello_version;
        Ok(HelloReply {
            protocol_version: version,
            helper_version: "fake-0.0.0".into(),
            capabilities: vec![
                Capability::GoldenImage,
                Capability::UsbMount,
                Capability::Smart,
                Capability::Sensors,
            ],
            mount_backend: MountBackend::Direct,
        })
    }

    async fn golden_image_create(
        self,
        _: tarpc::context::Context,
        req: GoldenImageRequest,
    ) -> Result<GoldenImageReply, HelperError> {
        let vmid = req.vmid;
        self.enter(Call::GoldenImageCreate(req)).await?;
        Ok(GoldenImageReply {
            vmid,
            output: ToolOutput {
                exit_code: Some(0),
                stdout: "extracting archive\nDetected container architecture: amd64\n".into(),
                ..ToolOutput::default()
            },
        })
    }

    async fn usb_mount(
        self,
        _: tarpc::context::Context,
        req: UsbMountRequest,
    ) -> Result<MountInfo, HelperError> {
        self.enter(Call::UsbMount(req.clone())).await?;
        let info = MountInfo {
            mount_point: format!("/mnt/felhom/{}", req.name),
            name: req.name,
            uuid: req.uuid,
            fstype: FsType::Ext4,
            options: "nodev,nosuid,noexec,nofail".into(),
            mounted: true,
            backend: MountBackend::Direct,
            unit: None,
        };
        let mut inner = lock(&self.inner);
        inner.mounts.retain(|m| m.name != info.name);
        inner.mounts.push(info.clone());
        Ok(info)
    }

    async fn usb_unmount(
        self,
        _: tarpc::context::Context,
        name: MountName,
    ) -> Result<UnmountReply, HelperError> {
        self.enter(Call::UsbUnmount(name.clone())).await?;
        let mut inner = lock(&self.inner);
        let before = inner.mounts.len();
        inner.mounts.retain(|m| m.name != name);
        if inner.mounts.len() == before {
            return Err(HelperError::NotFound {
                what: format!("managed mount {name}"),
            });
        }
        Ok(UnmountReply {
            name,
            was_mounted: true,
        })
    }

    async fn usb_list(self, _: tarpc::context::Context) -> Result<Vec<MountInfo>, HelperError> {
        self.enter(Call::UsbList).await?;
        Ok(lock(&self.inner).mounts.clone())
    }

    async fn smart_scan(self, _: tarpc::context::Context) -> Result<Vec<DiskInfo>, HelperError> {
        self.enter(Call::SmartScan).await?;
        Ok(lock(&self.inner)
            .disks
            .iter()
            .map(|d| d.info.clone())
            .collect())
    }

    async fn smart_read(
        self,
        _: tarpc::context::Context,
        disk: DiskName,
    ) -> Result<SmartReport, HelperError> {
        self.enter(Call::SmartRead(disk.clone())).await?;
        let inner = lock(&self.inner);
        let d = inner
            .disks
            .iter()
            .find(|d| d.info.name == disk)
            .ok_or_else(|| HelperError::NotFound {
                what: format!("disk {disk}"),
            })?;
        Ok(SmartReport {
            disk,
            device_type: None,
            exit_status: d.exit_status,
            json: d.json.clone(),
            truncated: false,
        })
    }

    async fn sensors_read(
        self,
        _: tarpc::context::Context,
    ) -> Result<Vec<SensorReading>, HelperError> {
        self.enter(Call::SensorsRead).await?;
        Ok(vec![
            SensorReading {
                chip: "coretemp".into(),
                device: "hwmon0".into(),
                label: "Package id 0".into(),
                kind: SensorKind::Temperature,
                value: 42.0,
            },
            SensorReading {
                chip: "nct6798".into(),
                device: "hwmon1".into(),
                label: "fan1".into(),
                kind: SensorKind::Fan,
                value: 812.0,
            },
        ])
    }
}

/// A running fake helper. Dropping it stops the server and removes its socket directory.
#[derive(Debug)]
pub struct FakeHelper {
    dir: tempfile::TempDir,
    socket: PathBuf,
    inner: Arc<Mutex<Inner>>,
    accept: JoinHandle<()>,
}

impl FakeHelper {
    /// Starts the fake on `<tempdir>/helper.sock` with one healthy disk `sda`. Must be called
    /// inside a tokio runtime (multi-threaded when the test waits for a child process).
    pub async fn start() -> anyhow::Result<FakeHelper> {
        let dir = tempfile::Builder::new()
            .prefix("felhom-fake-helper-")
            .tempdir()
            .context("creating the fake helper's directory")?;
        let socket = dir.path().join("helper.sock");
        let listener =
            UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
        let inner = Arc::new(Mutex::new(Inner {
            calls: Vec::new(),
            script: HashMap::new(),
            hello_version: PROTOCOL_VERSION,
            disks: vec![FakeDisk {
                info: DiskInfo {
                    name: DiskName::new("sda")?,
                    size_bytes: 500_107_862_016,
                    model: Some("FAKE SSD".into()),
                    removable: false,
                    rotational: Some(false),
                },
                exit_status: 0,
                json: healthy_ata_json("FAKE SSD 500GB", "FAKE0001", 33),
            }],
            mounts: Vec::new(),
            connections: 0,
        }));
        let shared = inner.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                lock(&shared).connections += 1;
                let kill = Arc::new(Notify::new());
                let server = Server {
                    inner: shared.clone(),
                    kill: kill.clone(),
                };
                tokio::spawn(async move {
                    let serve = BaseChannel::with_defaults(server_transport(stream))
                        .execute(server.serve())
                        .for_each(|fut| async move {
                            tokio::spawn(fut);
                        });
                    tokio::select! {
                        () = serve => {}
                        () = kill.notified() => {}
                    }
                });
            }
        });
        Ok(FakeHelper {
            dir,
            socket,
            inner,
            accept,
        })
    }

    /// The socket to point the agent at.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The fake's temporary directory (holds the socket; free for other test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner).calls.clone()
    }

    /// The calls received so far, without the `hello` handshakes.
    pub fn calls_without_hello(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| !matches!(c, Call::Hello(_)))
            .collect()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        lock(&self.inner).connections
    }

    /// The next call of `method` does `what` instead of answering normally. Several scripts
    /// for one method apply in order.
    pub fn script(&self, method: Method, what: Scripted) {
        lock(&self.inner)
            .script
            .entry(method)
            .or_default()
            .push_back(what);
    }

    /// The next call of `method` answers with `err`.
    pub fn fail_next(&self, method: Method, err: HelperError) {
        self.script(method, Scripted::Error(err));
    }

    /// `hello` answers with this protocol version from now on.
    pub fn set_hello_version(&self, v: u32) {
        lock(&self.inner).hello_version = v;
    }

    /// Replaces the canned disks.
    pub fn set_disks(&self, disks: Vec<FakeDisk>) {
        lock(&self.inner).disks = disks;
    }
}

impl Drop for FakeHelper {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Writes `dir/agent.json` (and `dir/pve-token`, mode 0600) for an agent that talks to `sim`
/// (pinned by fingerprint) and to the helper at `helper_socket`, with its state in
/// `dir/state` and the given service interval. Returns the config path.
pub fn write_agent_config(
    dir: &Path,
    sim: &PveSim,
    helper_socket: &Path,
    interval_secs: u64,
) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token = dir.join("pve-token");
    let _ = std::fs::remove_file(&token);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token)
        .and_then(|mut f| f.write_all(sim.token_secret().as_bytes()))
        .with_context(|| format!("writing {}", token.display()))?;
    let config = serde_json::json!({
        "api_url": sim.base_url(),
        "node": sim.node(),
        "token_id": sim.token_id(),
        "token_secret_file": token,
        "tls_fingerprint": sim.fingerprint(),
        "helper_socket": helper_socket,
        "state_dir": dir.join("state"),
        "interval_secs": interval_secs,
        "request_timeout_secs": 10,
    });
    let path = dir.join("agent.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
