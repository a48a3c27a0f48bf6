//! The fuzz targets' bodies (`fuzz/src/lib.rs`, included here) run in the normal test suite
//! over every committed seed (`fuzz/corpus/TARGET/`) and every input that ever crashed a
//! target (`fuzz/regressions/TARGET/`): a crash found by `cargo fuzz` becomes a failing test
//! by dropping the artifact into `fuzz/regressions/TARGET/`.
//!
//! `write_seeds` (ignored; run by hand, see docs/testing.md) writes the initial seeds: real
//! encoded request frames and representative values of every input kind.

// The included fuzz targets are used here only in part.
#![allow(missing_docs, dead_code)]

#[path = "../../../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

use felhom_protocol::*;
use felhom_tests::helper_harness::ctx;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn every_seed_and_past_crash_replays_without_a_panic() {
    targets::set_scratch_dir(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-scratch"));
    let mut total = 0;
    for (name, body) in targets::TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        let crashes = files(&fuzz_dir().join("regressions").join(name));
        assert!(
            !seeds.is_empty(),
            "target {name} has no committed seed corpus in fuzz/corpus/{name}"
        );
        for f in seeds.iter().chain(&crashes) {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(r.is_ok(), "target {name} panicked on {}", f.display());
        }
        println!(
            "{name}: {} seeds, {} past crashes replayed",
            seeds.len(),
            crashes.len()
        );
        total += seeds.len() + crashes.len();
    }
    println!(
        "{total} inputs replayed over {} targets",
        targets::TARGETS.len()
    );
}

/// The properties the targets check are real: each of these inputs breaks one of them when
/// fed to the wrong place, so a target that asserted nothing would fail here.
#[test]
fn the_targets_properties_can_fail() {
    // A printed UPID must equal its input: the same input with a different case in a hex
    // field parses (hex is case-insensitive) only if the printer keeps the text.
    let ok = "UPID:pve:0000A1B2:00C0FFEE:65A1B2C3:vzdump:100:felhom@pve!agent:";
    targets::upid_roundtrip(ok.as_bytes());
    // Control characters are detected by the text check the error target applies.
    assert!(!targets::is_clean_text("a\u{1b}[2Jb"));
    assert!(!targets::is_clean_text("a\u{9b}b"));
    assert!(targets::is_clean_text(
        "Permission check failed (/vms/100, VM.Audit)"
    ));
    // The certificate target's date check: a date is found only as the input spells it, and a
    // UTCTime only for the years 1950–2049 (`50` is 1950, `49` is 2049).
    let at = |y, mo, d, h, mi, s| {
        civil::DateTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        }
        .to_unix()
    };
    let utc = |s: &str| [&[0x17, 13][..], s.as_bytes()].concat();
    let end_2049 = at(2049, 12, 31, 23, 59, 59);
    assert!(targets::time_text_in(&utc("491231235959Z"), end_2049));
    assert!(!targets::time_text_in(&utc("491231235959Z"), end_2049 + 1));
    assert!(!targets::time_text_in(
        &utc("491231235959Z"),
        at(1949, 12, 31, 23, 59, 59)
    ));
    assert!(targets::time_text_in(
        &utc("500101000000Z"),
        at(1950, 1, 1, 0, 0, 0)
    ));
    assert!(!targets::time_text_in(
        &utc("500101000000Z"),
        at(2050, 1, 1, 0, 0, 0)
    ));
    let gen_2050 = [&[0x18, 15][..], b"20500101000000Z"].concat();
    assert!(targets::time_text_in(&gen_2050, at(2050, 1, 1, 0, 0, 0)));
}

/// The certificate seeds are real certificates (made with `openssl req -x509` and
/// `openssl ca -startdate/-enddate`, throwaway keys): the reader finds the notAfter openssl
/// wrote in each, UTCTime and GeneralizedTime, with and without the version field.
#[test]
fn the_certificate_seeds_read_as_openssl_wrote_them() {
    use felhom_agent::pve::certexpiry::not_after;
    let read: Vec<String> = files(&fuzz_dir().join("corpus").join("cert_not_after"))
        .iter()
        .filter_map(|f| not_after(&std::fs::read(f).unwrap()))
        .map(|t| civil::DateTime::from_unix(t).to_string())
        .collect();
    for want in [
        "2049-12-31 23:59:59", // UTCTime 491231235959Z, version 1
        "9999-12-31 23:59:59", // GeneralizedTime 99991231235959Z, version 1
        "2028-12-03 12:34:04", // UTCTime, version 3 (`req -x509 -days 730`)
        "2054-04-21 12:34:04", // GeneralizedTime, version 3 (`req -x509 -days 10000`)
    ] {
        assert!(read.iter().any(|r| r == want), "{want} not in {read:?}");
    }
}

/// Encodes a real request frame (length prefix included) with the agent's transport.
async fn encode_request(message: HelperRequest) -> Vec<u8> {
    use futures::SinkExt;
    use tokio::io::AsyncReadExt;
    let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
    let mut tx = transport::client_transport(a);
    tx.send(tarpc::ClientMessage::Request(tarpc::Request {
        context: ctx(30),
        id: 1,
        message,
    }))
    .await
    .unwrap();
    drop(tx);
    let mut out = Vec::new();
    b.read_to_end(&mut out).await.unwrap();
    out
}

fn golden() -> GoldenImageRequest {
    GoldenImageRequest {
        vmid: Vmid::new(100).unwrap(),
        template: TemplateVolid::new("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
            .unwrap(),
        hostname: Hostname::new("golden").unwrap(),
        storage: StorageId::new("local-lvm").unwrap(),
        rootfs_gib: RootfsGib::DEFAULT,
        memory_mib: MemoryMib::DEFAULT,
        cores: Cores::DEFAULT,
        bridge: Bridge::new("vmbr0").unwrap(),
    }
}

fn with_selector(sel: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend_from_slice(rest);
    v
}

/// Writes the initial seeds into `$FELHOM_FUZZ_SEEDS_OUT/TARGET/` (then `cargo fuzz cmin`
/// them into fuzz/corpus). Ignored: a tool, not a check.
#[tokio::test]
#[ignore]
async fn write_seeds() {
    let out =
        PathBuf::from(std::env::var("FELHOM_FUZZ_SEEDS_OUT").expect("set FELHOM_FUZZ_SEEDS_OUT"));
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    // helper_request_frame: one real frame per request kind, and two frames back to back.
    let requests = vec![
        HelperRequest::Hello {
            agent_protocol: PROTOCOL_VERSION,
        },
        HelperRequest::GoldenImageCreate { req: golden() },
        HelperRequest::UsbMount {
            req: UsbMountRequest {
                uuid: FsUuid::new("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d").unwrap(),
                name: MountName::new("backup1").unwrap(),
            },
        },
        HelperRequest::UsbUnmount {
            name: MountName::new("backup1").unwrap(),
        },
        HelperRequest::UsbList {},
        HelperRequest::SmartScan {},
        HelperRequest::SmartRead {
            disk: DiskName::new("sda").unwrap(),
        },
        HelperRequest::SensorsRead {},
    ];
    let mut all = Vec::new();
    for r in requests {
        let f = encode_request(r).await;
        all.extend_from_slice(&f);
        seeds.push(("helper_request_frame", f));
    }
    seeds.push(("helper_request_frame", all));

    // protocol_newtypes: selector byte, then a valid value of that type.
    for (sel, v) in [
        (0u8, "local-lvm"),
        (1, "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        (2, "golden.example.com"),
        (3, "vmbr0"),
        (4, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
        (4, "1234-ABCD"),
        (4, "0123456789ABCDEF"),
        (5, "backup1"),
        (6, "nvme0n1"),
        (6, "sda"),
    ] {
        seeds.push(("protocol_newtypes", with_selector(sel, v.as_bytes())));
    }
    for (sel, n) in [(7u8, 100u32), (8, 8), (9, 512), (10, 2)] {
        seeds.push(("protocol_newtypes", with_selector(sel, &n.to_le_bytes())));
    }

    // pve_responses: selector byte, then a `data` value of that shape.
    let bodies: &[(u8, &str)] = &[
        (
            0,
            r#"{"version":"8.2.4","release":"8.2","repoid":"faa83925c9641325"}"#,
        ),
        (
            1,
            r#"[{"node":"pve","status":"online","cpu":0.0123,"maxcpu":8,"mem":2147483648,"maxmem":16777216000,"uptime":12345,"ssl_fingerprint":"AB:CD"}]"#,
        ),
        (
            2,
            r#"{"uptime":12345,"cpu":0.05,"loadavg":["0.10","0.20","0.30"],"memory":{"total":16777216000,"used":2147483648,"free":14629732352},"rootfs":{"total":100,"used":50,"avail":50},"cpuinfo":{"cpus":8,"model":"Intel","sockets":1,"cores":4},"kversion":"Linux 6.8","pveversion":"pve-manager/8.2.4"}"#,
        ),
        (
            3,
            r#"[{"vmid":"100","name":"ct100","status":"running","cpu":0,"cpus":2,"mem":1024,"maxmem":2048,"disk":"0","maxdisk":8589934592,"uptime":60,"lock":"backup","tags":"a;b"}]"#,
        ),
        (
            4,
            r#"{"vmid":100,"name":"ct100","status":"stopped","cpus":1,"maxmem":536870912,"ha":{"managed":0}}"#,
        ),
        (
            5,
            r#"{"digest":"0123456789abcdef0123456789abcdef01234567","hostname":"ct100","memory":512,"net0":"name=eth0,bridge=vmbr0,ip=dhcp","lxc":[["lxc.apparmor.profile","unconfined"]]}"#,
        ),
        (
            6,
            r#"[{"name":"current","description":"You are here!","parent":"snap1"},{"name":"snap1","snaptime":1700000000,"description":"before upgrade"}]"#,
        ),
        (
            7,
            r#"[{"storage":"local","type":"dir","content":"iso,vztmpl,backup","active":1,"enabled":1,"shared":0,"total":100,"used":10,"avail":90}]"#,
        ),
        (
            8,
            r#"[{"volid":"local:backup/vzdump-lxc-100-2024_01_01-00_00_00.tar.zst","content":"backup","format":"tar.zst","size":12345,"ctime":1700000000,"vmid":100,"notes":"n","protected":1}]"#,
        ),
        (
            9,
            r#"{"upid":"UPID:pve:0000A1B2:00C0FFEE:65A1B2C3:vzdump:100:felhom@pve!agent:","node":"pve","pid":41394,"pstart":12648430,"starttime":1705095875,"type":"vzdump","id":"100","user":"felhom@pve!agent","status":"stopped","exitstatus":"OK"}"#,
        ),
        (
            10,
            r#"[{"n":1,"t":"INFO: starting new backup job"},{"n":2,"t":"TASK ERROR: job errors"}]"#,
        ),
        (
            11,
            r#"[{"id":"lxc/100","type":"lxc","node":"pve","vmid":100,"status":"running","name":"ct100"},{"id":"storage/pve/local","type":"storage","storage":"local"}]"#,
        ),
        (
            12,
            r#"[{"id":"node/pve","name":"pve","type":"node","online":1,"local":1,"nodeid":1,"ip":"192.0.2.1"}]"#,
        ),
        (
            13,
            r#"{"/":{"Sys.Audit":1},"/vms/100":{"VM.Snapshot":1,"VM.Audit":0}}"#,
        ),
    ];
    for (sel, b) in bodies {
        seeds.push(("pve_responses", with_selector(*sel, b.as_bytes())));
    }

    // upid_roundtrip.
    for u in [
        "UPID:pve:0000A1B2:00C0FFEE:65A1B2C3:vzdump:100:felhom@pve!agent:",
        "UPID:node-2:00001234:0000ABCD:5F000000:vzcreate:101:root@pam:",
        "UPID:pve:00000001:00000002:00000003:aptupdate::root@pam:",
    ] {
        seeds.push(("upid_roundtrip", u.as_bytes().to_vec()));
    }

    // pve_error_text: status (2 bytes LE), flags, reason length (2 bytes LE), reason, body.
    let errors: &[(u16, u8, &str, &str)] = &[
        (
            403,
            1,
            "Permission check failed (/vms/100, VM.Snapshot)",
            r#"{"data":null,"message":"Permission check failed (/vms/100, VM.Snapshot)\n"}"#,
        ),
        (
            400,
            1,
            "Parameter verification failed.",
            r#"{"data":null,"errors":{"vmid":"VM 100 already exists"},"message":"Parameter verification failed.\n"}"#,
        ),
        (500, 1, "CT is locked (backup)", r#"{"data":null}"#),
        (
            500,
            1,
            "Configuration file 'nodes/pve/lxc/999.conf' does not exist",
            "",
        ),
        (401, 1, "No ticket", ""),
        (596, 0, "Connection timed out", ""),
        (
            502,
            3,
            "",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        ),
        (
            500,
            1,
            "job errors",
            r#"[{"n":1,"t":"INFO: starting"},{"n":2,"t":"ERROR: Backup of VM 100 failed - CT is locked (snapshot)"},{"n":3,"t":"TASK ERROR: job errors"}]"#,
        ),
    ];
    for (status, flags, reason, body) in errors {
        let mut v = status.to_le_bytes().to_vec();
        v.push(*flags);
        v.extend((reason.len() as u16).to_le_bytes());
        v.extend_from_slice(reason.as_bytes());
        v.extend_from_slice(body.as_bytes());
        seeds.push(("pve_error_text", v));
    }

    // smart_summary: the fake smartctl's outputs and two hand-made shapes.
    let fake_smart =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-tools/smartctl"))
            .unwrap_or_default();
    for line in fake_smart
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
    {
        seeds.push(("smart_summary", with_selector(0, line.trim().as_bytes())));
    }
    for (exit, j) in [
        (
            0u8,
            r#"{"smartctl":{"exit_status":0},"device":{"name":"/dev/sda","type":"sat"},"model_name":"Samsung SSD 870","serial_number":"S1","smart_status":{"passed":true},"temperature":{"current":35},"power_on_time":{"hours":1000},"ata_smart_attributes":{"table":[{"id":5,"name":"Reallocated_Sector_Ct","raw":{"value":0}},{"id":177,"name":"Wear_Leveling_Count","value":98,"raw":{"value":12}}]}}"#,
        ),
        (
            8,
            r#"{"smartctl":{"exit_status":8},"device":{"name":"/dev/nvme0","type":"nvme"},"model_name":"NVMe","smart_status":{"passed":false},"nvme_smart_health_information_log":{"critical_warning":4,"temperature":60,"available_spare":5,"available_spare_threshold":10,"percentage_used":120,"media_errors":3}}"#,
        ),
        (
            2,
            r#"{"smartctl":{"exit_status":2,"messages":[{"string":"/dev/sdb: Unable to detect device type","severity":"error"}]}}"#,
        ),
    ] {
        seeds.push(("smart_summary", with_selector(exit, j.as_bytes())));
    }

    // helper_config and agent_config: the repo's example configs.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Ok(t) = std::fs::read(root.join("systemd/helper.json.example")) {
        seeds.push(("helper_config", t));
    }
    seeds.push((
        "helper_config",
        br#"{"agent_user":"root","tools":{"pct":"/bin/true"},"idle_timeout_secs":30}"#.to_vec(),
    ));
    if let Ok(t) = std::fs::read(root.join("systemd/agent.json.example")) {
        seeds.push(("agent_config", t));
    }
    seeds.push(("agent_config", br#"{"api_url":"https://127.0.0.1:8006","node":"pve","token_id":"felhom@pve!agent","token_secret_file":"/etc/hostname","tls_fingerprint":"AB:CD:EF","request_timeout_secs":10,"helper_socket":"/run/felhom/helper.sock"}"#.to_vec()));

    // set_config_args.
    for a in [
        "memory=2048\ncores=2\nswap=512",
        "hostname=ct100.example.com\ndescription=web server\nonboot=1\nprotection=0",
        "net0=name=eth0,bridge=vmbr0,ip=dhcp\nnet31=name=eth1,bridge=vmbr1",
        "mp0=local-lvm:8,mp=/srv/data\nmp255=volume=local:subvol-100-disk-1,mp=/mnt",
        "cpulimit=1.5\ncpuunits=1024\nstartup=order=1,up=30\nnameserver=192.0.2.53\nsearchdomain=example.com\ntags=a;b",
    ] {
        seeds.push(("set_config_args", a.as_bytes().to_vec()));
    }

    for (i, (target, data)) in seeds.iter().enumerate() {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i:03}")), data).unwrap();
    }
    println!("wrote {} seeds into {}", seeds.len(), out.display());
}
