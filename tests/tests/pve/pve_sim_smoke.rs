//! Smoke tests of the Proxmox VE simulator itself, over a raw HTTP/1.1-over-TLS client so the
//! status line (reason phrase) and body are seen exactly as sent.

// Helpers outside `#[test]` functions panic on purpose: a panic is a failed test.
use std::sync::Arc;
use std::time::{Duration, Instant};

use felhom_tests::pve_sim::{Fault, FaultKind, PveSim, SimOptions, TaskOutcome};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
struct Resp {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: String,
    leaf_sha256: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", self.body))
    }
    fn data(&self) -> Value {
        assert_eq!(
            self.status, 200,
            "{} {} {}",
            self.status, self.reason, self.body
        );
        self.json()["data"].clone()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Auth<'a> {
    Token,
    None,
    Raw(&'a str),
}

async fn call(
    sim: &PveSim,
    method: &str,
    path: &str,
    form: Option<&str>,
    auth: Auth<'_>,
) -> std::io::Result<Resp> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(sim.ca_pem().as_bytes()).expect("CA PEM");
    roots.add(ca).expect("add CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector.connect(name, tcp).await?;
    let leaf_sha256 = {
        let (_, conn) = tls.get_ref();
        let leaf = &conn.peer_certificates().expect("peer certs")[0];
        Sha256::digest(leaf.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut req =
        format!("{method} /api2/json{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    match auth {
        Auth::Token => req.push_str(&format!(
            "Authorization: PVEAPIToken={}={}\r\n",
            sim.token_id(),
            sim.token_secret()
        )),
        Auth::Raw(v) => req.push_str(&format!("Authorization: {v}\r\n")),
        Auth::None => {}
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tls.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts.next().unwrap_or("0").parse().unwrap_or(0);
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Resp {
        status,
        reason,
        headers,
        body: body.to_string(),
        leaf_sha256,
    })
}

async fn get(sim: &PveSim, path: &str) -> Resp {
    call(sim, "GET", path, None, Auth::Token)
        .await
        .expect("GET")
}

async fn post(sim: &PveSim, path: &str, form: &str) -> Resp {
    call(sim, "POST", path, Some(form), Auth::Token)
        .await
        .expect("POST")
}

async fn start(opts: SimOptions) -> PveSim {
    PveSim::start(SimOptions {
        unauthorized_delay: Duration::from_millis(20),
        task_duration: Duration::from_millis(150),
        ..opts
    })
    .await
    .expect("simulator starts")
}

/// Polls a task until it stops; returns its final status object.
async fn wait_task(sim: &PveSim, upid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = get(sim, &format!("/nodes/pve/tasks/{upid}/status"))
            .await
            .data();
        if st["status"] == "stopped" {
            return st;
        }
        assert_eq!(st["status"], "running");
        assert!(Instant::now() < deadline, "task {upid} never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends all running tasks now and returns the final status of `upid`; used by tests that
/// observe the running state under a long task duration, so no assertion depends on timing.
async fn finish(sim: &PveSim, upid: &str) -> Value {
    sim.state().complete_running_tasks();
    wait_task(sim, upid).await
}

fn assert_upid(upid: &str, kind: &str, id: &str) {
    let parts: Vec<&str> = upid.split(':').collect();
    assert_eq!(parts.len(), 9, "{upid}");
    assert_eq!(parts[0], "UPID");
    assert_eq!(parts[1], "pve");
    for hex in &parts[2..5] {
        assert_eq!(hex.len(), 8, "{upid}");
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
    }
    assert_eq!(parts[5], kind);
    assert_eq!(parts[6], id);
    assert_eq!(parts[7], "felhom@pve!agent");
    assert_eq!(parts[8], "");
}

#[tokio::test]
async fn tls_identity_and_version() {
    let sim = start(SimOptions::default()).await;
    let r = get(&sim, "/version").await;
    assert_eq!(r.leaf_sha256, sim.fingerprint());
    assert_eq!(r.header("server"), Some("pve-api-daemon/3.0"));
    assert_eq!(r.data()["version"], "9.1.3");
    assert_eq!(r.data()["release"], "9.1");
    let nodes = get(&sim, "/nodes").await.data();
    assert_eq!(nodes[0]["node"], "pve");
    assert_eq!(nodes[0]["ssl_fingerprint"], sim.fingerprint().as_str());
}

#[tokio::test]
async fn authentication_failures() {
    let sim = start(SimOptions::default()).await;
    let r = call(&sim, "GET", "/version", None, Auth::None)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.reason.as_str(), r.body.as_str()),
        (401, "No ticket", "")
    );
    let bad = format!("PVEAPIToken={}=wrong", sim.token_id());
    let r = call(&sim, "GET", "/version", None, Auth::Raw(&bad))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "Authentication failed!")
    );
    // The space form with a uri-escaped value is accepted too.
    let spaced = format!(
        "PVEAPIToken {}%3D{}",
        sim.token_id().replace('@', "%40").replace('!', "%21"),
        sim.token_secret()
    );
    let r = call(&sim, "GET", "/version", None, Auth::Raw(&spaced))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let recorded = sim.state().requests();
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded
            .iter()
            .all(|q| !format!("{q:?}").contains(sim.token_secret()))
    );
}

#[tokio::test]
async fn errors_permissions_and_filtering() {
    let sim = start(SimOptions::default()).await;
    let r = get(&sim, "/nodes/pve/lxc/105/status/current").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve/lxc/105.conf' does not exist"
    );
    assert_eq!(
        r.json()["message"],
        "Configuration file 'nodes/pve/lxc/105.conf' does not exist\n"
    );
    assert_eq!(r.header("connection"), Some("close"));

    let r = get(&sim, "/nodes/pve/nothing").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (501, "Method 'GET /nodes/pve/nothing' not implemented")
    );

    sim.state().revoke("/vms/100", "VM.Snapshot");
    let r = post(&sim, "/nodes/pve/lxc/100/snapshot", "snapname=before").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/vms/100, VM.Snapshot)")
    );
    assert_eq!(sim.state().count_requests("POST", "/lxc/100/snapshot"), 1);

    sim.state().revoke("/vms/101", "VM.Audit");
    let list = get(&sim, "/nodes/pve/lxc").await.data();
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["vmid"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![100]);

    sim.state().set_privileges(&[("/vms", &["VM.Audit"])]);
    let r = get(&sim, "/nodes/pve/status").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/nodes/pve, Sys.Audit)")
    );
    assert_eq!(
        get(&sim, "/nodes/pve/storage").await.data(),
        Value::Array(vec![])
    );
}

#[tokio::test]
async fn legacy_wire_format() {
    let sim = start(SimOptions {
        legacy_wire: true,
        version: "7.4-16".into(),
        ..SimOptions::default()
    })
    .await;
    let list = get(&sim, "/nodes/pve/lxc").await.data();
    assert_eq!(list[0]["vmid"], "100");
    let st = get(&sim, "/nodes/pve/lxc/100/status/current").await.data();
    assert!(st["maxmem"].is_string(), "{st}");
    let r = post(&sim, "/nodes/pve/lxc/100/status/start", "").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT 100 already running")
    );
    assert_eq!(r.body, r#"{"data":null}"#);
    // PVE 7 refused a locked guest before forking the task.
    sim.state().set_lock(101, Some("snapshot"));
    let r = post(&sim, "/nodes/pve/lxc/101/status/start", "").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT is locked (snapshot)")
    );
}

#[tokio::test]
async fn snapshot_task_lifecycle_and_lock() {
    let sim = start(SimOptions::default()).await;
    let state = sim.state();
    state.set_task_duration(Duration::from_secs(3600));
    let upid = post(
        &sim,
        "/nodes/pve/lxc/100/snapshot",
        "snapname=before&description=x",
    )
    .await
    .data();
    let upid = upid.as_str().unwrap().to_string();
    assert_upid(&upid, "vzsnapshot", "100");
    let running = get(&sim, &format!("/nodes/pve/tasks/{upid}/status"))
        .await
        .data();
    assert_eq!(running["status"], "running");
    assert_eq!(running["user"], "felhom@pve");
    assert_eq!(running["tokenid"], "agent");
    assert_eq!(state.container_config(100).unwrap()["lock"], "snapshot");
    let r = call(
        &sim,
        "PUT",
        "/nodes/pve/lxc/100/config",
        Some("memory=2048"),
        Auth::Token,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT is locked (snapshot)")
    );

    let done = finish(&sim, &upid).await;
    assert_eq!(done["exitstatus"], "OK");
    assert_eq!(state.snapshot_names(100), vec!["before".to_string()]);
    assert!(!state.container_config(100).unwrap().contains_key("lock"));
    let log = get(
        &sim,
        &format!("/nodes/pve/tasks/{upid}/log?start=0&limit=0"),
    )
    .await;
    let items = log.json()["data"].as_array().unwrap().clone();
    assert_eq!(log.json()["total"].as_u64().unwrap() as usize, items.len());
    assert_eq!(items.last().unwrap()["t"], "TASK OK");
    assert_eq!(items[0]["n"], 1);

    let snaps = get(&sim, "/nodes/pve/lxc/100/snapshot").await.data();
    assert_eq!(snaps[0]["name"], "before");
    assert_eq!(snaps[1]["name"], "current");
    assert_eq!(snaps[1]["parent"], "before");

    // The same name again fails inside the task.
    let upid = post(&sim, "/nodes/pve/lxc/100/snapshot", "snapname=before")
        .await
        .data();
    let done = finish(&sim, upid.as_str().unwrap()).await;
    assert_eq!(done["exitstatus"], "snapshot name 'before' already used");

    // Wrong node in the path.
    let r = get(
        &sim,
        &format!("/nodes/other/tasks/{}/status", upid.as_str().unwrap()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"]["upid"], "no such task");
}

#[tokio::test]
async fn task_outcomes_warnings_and_errors() {
    let sim = start(SimOptions::default()).await;
    let state = sim.state();
    state.set_next_task_outcome(TaskOutcome::Warnings(vec!["a".into(), "b".into()]));
    let upid = post(&sim, "/nodes/pve/lxc/101/status/start", "")
        .await
        .data();
    let done = wait_task(&sim, upid.as_str().unwrap()).await;
    assert_eq!(done["exitstatus"], "WARNINGS: 2");
    assert_eq!(state.container_running(101), Some(true));
    let log = get(
        &sim,
        &format!("/nodes/pve/tasks/{}/log", upid.as_str().unwrap()),
    )
    .await
    .data();
    let lines: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap())
        .collect();
    assert_eq!(lines, vec!["WARN: a", "WARN: b", "TASK WARNINGS: 2"]);

    // PVE 8.2+ checks the lock inside the task.
    state.set_lock(100, Some("backup"));
    let upid = post(&sim, "/nodes/pve/lxc/100/status/stop", "")
        .await
        .data();
    let done = wait_task(&sim, upid.as_str().unwrap()).await;
    assert_eq!(done["exitstatus"], "CT is locked (backup)");
    assert_eq!(state.container_running(100), Some(true));
    assert_eq!(state.container_config(100).unwrap()["lock"], "backup");

    state.set_next_task_outcome(TaskOutcome::Error("command 'lxc-stop' failed".into()));
    let upid = post(&sim, "/nodes/pve/lxc/101/status/stop", "")
        .await
        .data();
    let done = wait_task(&sim, upid.as_str().unwrap()).await;
    assert_eq!(done["exitstatus"], "command 'lxc-stop' failed");
    assert_eq!(state.container_running(101), Some(true));
}

#[tokio::test]
async fn config_digest_and_feature_rules() {
    let sim = start(SimOptions::default()).await;
    let cfg = get(&sim, "/nodes/pve/lxc/101/config").await.data();
    let digest = cfg["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 40);
    let put = |form: String| {
        let sim = &sim;
        async move {
            call(
                sim,
                "PUT",
                "/nodes/pve/lxc/101/config",
                Some(&form),
                Auth::Token,
            )
            .await
            .unwrap()
        }
    };
    let r = put(format!("memory=4096&digest={}", "0".repeat(40))).await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            500,
            "detected modified configuration - file changed by other user? Try again."
        )
    );
    let r = put(format!("memory=4096&delete=onboot&digest={digest}")).await;
    assert_eq!(r.data(), Value::Null);
    let cfg = sim.state().container_config(101).unwrap();
    assert_eq!(cfg["memory"], 4096);
    assert!(!cfg.contains_key("onboot"));
    let r = put("features=nesting%3D1".into()).await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            403,
            "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
        )
    );
    let r = put("bogus=1".into()).await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Parameter verification failed.")
    );
    assert!(r.json()["errors"]["bogus"].is_string());
    sim.state().set_lock(101, Some("backup"));
    let r = put("memory=512".into()).await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT is locked (backup)")
    );
}

#[tokio::test]
async fn backup_and_restore() {
    let sim = start(SimOptions::default()).await;
    let state = sim.state();
    state.set_task_duration(Duration::from_secs(3600));
    let r = post(&sim, "/nodes/pve/vzdump", "vmid=4242&storage=local").await;
    assert_eq!(r.data(), "OK");

    let upid = post(
        &sim,
        "/nodes/pve/vzdump",
        "vmid=100&mode=snapshot&storage=local&compress=zstd&notes-template=%7B%7Bguestname%7D%7D",
    )
    .await
    .data();
    let upid = upid.as_str().unwrap().to_string();
    assert_upid(&upid, "vzdump", "100");
    assert_eq!(state.container_config(100).unwrap()["lock"], "backup");
    assert_eq!(finish(&sim, &upid).await["exitstatus"], "OK");
    let backups = state.backups("local", 100);
    assert_eq!(backups.len(), 1);
    let volid = &backups[0];
    assert!(volid.starts_with("local:backup/vzdump-lxc-100-") && volid.ends_with(".tar.zst"));
    let log = get(&sim, &format!("/nodes/pve/tasks/{upid}/log?limit=0"))
        .await
        .data();
    let file = volid.trim_start_matches("local:backup/");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["t"] == format!("INFO: creating vzdump archive '/var/lib/vz/dump/{file}'"))
    );
    let content = get(
        &sim,
        "/nodes/pve/storage/local/content?content=backup&vmid=100",
    )
    .await
    .data();
    assert_eq!(content[0]["volid"], volid.as_str());
    assert_eq!(content[0]["notes"], "web");

    let r = post(
        &sim,
        "/nodes/pve/lxc",
        &format!("vmid=100&ostemplate={volid}&restore=1"),
    )
    .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT 100 already exists on node 'pve'")
    );

    let upid = post(
        &sim,
        "/nodes/pve/lxc",
        &format!("vmid=105&ostemplate={volid}&restore=1&storage=local-lvm&unique=1"),
    )
    .await
    .data();
    let upid = upid.as_str().unwrap().to_string();
    assert_upid(&upid, "vzrestore", "105");
    assert_eq!(state.container_config(105).unwrap()["lock"], "create");
    assert_eq!(finish(&sim, &upid).await["exitstatus"], "OK");
    let cfg = state.container_config(105).unwrap();
    assert_eq!(cfg["hostname"], "web");
    assert_eq!(cfg["features"], "keyctl=1,nesting=1");
    assert_eq!(cfg["rootfs"], "local-lvm:vm-105-disk-0,size=8G");
    assert_ne!(cfg["net0"], state.container_config(100).unwrap()["net0"]);
    assert_eq!(state.container_running(105), Some(false));

    // A second backup of the same guest while one runs fails on the lock.
    let first = post(&sim, "/nodes/pve/vzdump", "vmid=101&storage=local")
        .await
        .data();
    let second = post(&sim, "/nodes/pve/vzdump", "vmid=101&storage=local")
        .await
        .data();
    let second = finish(&sim, second.as_str().unwrap()).await;
    assert_eq!(second["exitstatus"], "job errors");
    assert_eq!(
        finish(&sim, first.as_str().unwrap()).await["exitstatus"],
        "OK"
    );

    // Deleting a backup volume runs an `imgdel` task.
    let del = call(
        &sim,
        "DELETE",
        &format!("/nodes/pve/storage/local/content/{volid}"),
        None,
        Auth::Token,
    )
    .await
    .unwrap()
    .data();
    assert_upid(del.as_str().unwrap(), "imgdel", "");
    finish(&sim, del.as_str().unwrap()).await;
    assert!(state.backups("local", 100).is_empty());
}

#[tokio::test]
async fn injected_faults() {
    let sim = start(SimOptions::default()).await;
    let state = sim.state();
    state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/status/start".into(),
        kind: FaultKind::Status {
            code: 596,
            reason: "Connection timed out".into(),
        },
        times: 1,
    });
    let r = post(&sim, "/nodes/pve/lxc/101/status/start", "").await;
    assert_eq!((r.status, r.reason.as_str()), (596, "Connection timed out"));
    assert_eq!(state.container_running(101), Some(false));
    assert!(state.task_upids().is_empty());
    let upid = post(&sim, "/nodes/pve/lxc/101/status/start", "")
        .await
        .data();
    wait_task(&sim, upid.as_str().unwrap()).await;

    state.inject(Fault {
        method: Some("POST".into()),
        path_contains: "/status/stop".into(),
        kind: FaultKind::ExecuteThenStatus {
            code: 596,
            reason: "Connection timed out".into(),
        },
        times: 1,
    });
    let r = post(&sim, "/nodes/pve/lxc/101/status/stop", "").await;
    assert_eq!((r.status, r.reason.as_str()), (596, "Connection timed out"));
    assert_eq!(state.task_upids().len(), 2);
    assert!(state.task_upids()[1].contains(":vzstop:101:"));
    wait_task(&sim, &state.task_upids()[1]).await;
    assert_eq!(state.container_running(101), Some(false));

    state.inject(Fault {
        method: None,
        path_contains: "/version".into(),
        kind: FaultKind::CloseConnection,
        times: 1,
    });
    let r = call(&sim, "GET", "/version", None, Auth::Token).await;
    assert!(r.is_err(), "expected a dropped connection, got {r:?}");
    assert_eq!(get(&sim, "/version").await.status, 200);

    state.inject(Fault {
        method: None,
        path_contains: "/version".into(),
        kind: FaultKind::Stall(Duration::from_millis(50)),
        times: 1,
    });
    assert_eq!(get(&sim, "/version").await.status, 200);
    assert_eq!(state.count_requests("GET", "/version"), 3);
}

#[test]
fn binary_prints_connection_info_and_writes_config() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_felhom-pve-sim"))
        .args(["--task-ms", "50", "--write-config"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("agent.json")).unwrap())
            .unwrap();
    let mode = std::fs::metadata(dir.path().join("pve-token"))
        .unwrap()
        .permissions()
        .mode();
    // SAFETY: the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        info["base_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert_eq!(config["api_url"], info["base_url"]);
    assert_eq!(config["tls_fingerprint"], info["fingerprint"]);
    assert_eq!(config["token_id"], "felhom@pve!agent");
    assert_eq!(config["node"], "pve");
    assert_eq!(mode & 0o777, 0o600);
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    assert_eq!(ca, info["ca_pem"].as_str().unwrap());
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let secret = std::fs::read_to_string(config["token_secret_file"].as_str().unwrap()).unwrap();
    assert!(!secret.is_empty());
}

/// Keys of the first object in a fixture's `data` (array or object).
fn fixture_keys(dir: &std::path::Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let obj = match &v["data"] {
        Value::Array(a) => a[0].clone(),
        other => other.clone(),
    };
    obj.as_object().unwrap().keys().cloned().collect()
}

/// The simulator's bodies carry every field the real PVE 7 captures carry, with the same
/// JSON types where PVE 7 drifted (string vmid, string loadavg).
#[tokio::test]
async fn shapes_match_real_captures() {
    let Some(dir) = felhom_tests::bins::shared_fixtures("pve") else {
        return;
    };
    let sim = start(SimOptions {
        legacy_wire: true,
        version: "7.4-16".into(),
        ..SimOptions::default()
    })
    .await;
    let list = get(&sim, "/nodes/pve/lxc").await.data();
    let running = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "running")
        .unwrap()
        .clone();
    for key in fixture_keys(&dir, "pve7_lxc_list_vmid_string.json") {
        assert!(
            running.get(&key).is_some(),
            "lxc list lacks {key}: {running}"
        );
    }
    assert!(running["vmid"].is_string());

    let status = get(&sim, "/nodes/pve/status").await.data();
    for key in fixture_keys(&dir, "pve7_node_status.json") {
        assert!(status.get(&key).is_some(), "node status lacks {key}");
    }
    assert!(status["loadavg"][0].is_string());
    assert!(status["cpuinfo"]["mhz"].is_string());

    let nodes = get(&sim, "/nodes").await.data();
    for key in fixture_keys(&dir, "pve7_nodes_list.json") {
        assert!(nodes[0].get(&key).is_some(), "nodes lacks {key}");
    }
    let version = get(&sim, "/version").await.data();
    for key in fixture_keys(&dir, "pve7_node_version.json") {
        assert!(version.get(&key).is_some(), "version lacks {key}");
    }
    assert_eq!(version["repoid"].as_str().unwrap().len(), 8);

    let config = get(&sim, "/nodes/pve/lxc/100/config").await.data();
    for key in [
        "arch", "cores", "digest", "features", "hostname", "memory", "net0", "ostype", "rootfs",
        "swap",
    ] {
        assert!(config.get(key).is_some(), "config lacks {key}");
    }
    let real = fixture_keys(&dir, "pve7_lxc_config.json");
    assert!(real.contains(&"digest".to_string()));
}
