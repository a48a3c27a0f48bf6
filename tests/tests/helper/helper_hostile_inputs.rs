//! Hostile inputs, counted: a table of hostile values across the request types, each sent as a
//! real frame to the real helper under `systemd-socket-activate`, each refused at decode (the
//! connection is closed without a reply and no operation is logged), and the fake tools —
//! which record every run — must have run 0 times. Prints the number of cases.
//!
//! The frames are encoded from "shadow" request types: the same variants and fields in the
//! same order as `HelperRequest`, but with plain strings and integers, so values the real
//! newtypes refuse to construct can still be put on the wire. Control cases encoded the same
//! way must be accepted (and run their tool), which proves the shadow layout matches.

use std::io::{Read, Write};
use std::pin::Pin;
use std::time::{Duration, Instant};

use felhom_protocol::transport::{MAX_REQUEST_FRAME, WireCodec};
use felhom_tests::helper_harness::{HelperHarness, HelperHarnessOptions};
use serde::Serialize;
use tarpc::tokio_serde::Serializer;

/// `GoldenImageRequest` with plain fields (u64 so overflowing numbers can be sent).
#[derive(Serialize, Clone)]
struct Golden {
    vmid: u64,
    template: String,
    hostname: String,
    storage: String,
    rootfs_gib: u64,
    memory_mib: u64,
    cores: u64,
    bridge: String,
}

/// `UsbMountRequest` with plain fields.
#[derive(Serialize, Clone)]
struct UsbMount {
    uuid: String,
    name: String,
}

/// `HelperRequest`: same variants in the same order (bincode encodes the variant index).
#[derive(Serialize, Clone)]
#[allow(dead_code)] // variants without hostile fields keep the indices right
enum Shadow {
    Hello { agent_protocol: u32 },
    GoldenImageCreate { req: Golden },
    UsbMount { req: UsbMount },
    UsbUnmount { name: String },
    UsbList {},
    SmartScan {},
    SmartRead { disk: String },
    SensorsRead {},
}

fn good_golden() -> Golden {
    Golden {
        vmid: 9000,
        template: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
        hostname: "golden".into(),
        storage: "local-lvm".into(),
        rootfs_gib: 8,
        memory_mib: 512,
        cores: 1,
        bridge: "vmbr0".into(),
    }
}

/// A real request frame: 4-byte big-endian length, then the bincode `ClientMessage`.
fn frame(message: Shadow) -> Vec<u8> {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(30);
    let msg = tarpc::ClientMessage::Request(tarpc::Request {
        context: ctx,
        id: 1,
        message,
    });
    let mut codec = WireCodec::<(), tarpc::ClientMessage<Shadow>>::new(64, 1 << 20);
    let body = Pin::new(&mut codec).serialize(&msg).unwrap();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Sends one frame on a fresh connection; returns the bytes the helper answered before it
/// closed the connection (empty: refused).
fn exchange(h: &HelperHarness, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(h.socket_path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                // One reply frame is enough to know the request got past decode.
                if reply.len() >= 4 {
                    let len = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
                    if reply.len() >= 4 + len as usize {
                        break;
                    }
                }
            }
            Err(e) => panic!("the helper neither answered nor closed: {e}"),
        }
    }
    reply
}

fn golden_with(f: impl FnOnce(&mut Golden)) -> Shadow {
    let mut g = good_golden();
    f(&mut g);
    Shadow::GoldenImageCreate { req: g }
}

fn hostile_cases() -> Vec<(String, Shadow)> {
    let mut cases: Vec<(String, Shadow)> = Vec::new();
    let long = "a".repeat(300);
    let mut add = |what: &str, s: Shadow| cases.push((what.to_string(), s));

    // Numbers: zero, below the range, overflowing u32, beyond each cap.
    for (what, v) in [
        ("vmid 0", 0u64),
        ("vmid 99", 99),
        ("vmid 1e9+1", 1_000_000_001),
        ("vmid u32::MAX", u64::from(u32::MAX)),
        ("vmid overflowing u32", 1 << 40),
    ] {
        add(what, golden_with(|g| g.vmid = v));
    }
    add("rootfs 0", golden_with(|g| g.rootfs_gib = 0));
    add("rootfs huge", golden_with(|g| g.rootfs_gib = 1 << 31));
    add("memory 0", golden_with(|g| g.memory_mib = 0));
    add("memory overflow", golden_with(|g| g.memory_mib = u64::MAX));
    add("cores 0", golden_with(|g| g.cores = 0));
    add("cores 100000", golden_with(|g| g.cores = 100_000));

    // Templates outside vztmpl, traversal, NUL, newline, over-long.
    for t in [
        "local:iso/debian.iso",
        "local:backup/vzdump-lxc-100.tar.zst",
        "local:vztmpl/../../etc/shadow",
        "local:vztmpl/../x.tar.gz",
        "/var/lib/vz/template/cache/debian.tar.zst",
        "local:vztmpl/x\0.tar.zst",
        "local:vztmpl/x.tar.zst\n--unprivileged 0",
        "local:vztmpl/",
        "",
    ] {
        add(
            &format!("template {t:?}"),
            golden_with(|g| g.template = t.into()),
        );
    }
    add(
        "template over-long",
        golden_with(|g| g.template = format!("local:vztmpl/{}.tar.zst", "x".repeat(5000))),
    );

    // Hostnames.
    for v in [
        "a/b",
        "..",
        "-bad",
        "bad-",
        "a b",
        "a\0b",
        "a\u{1b}[2J",
        "héllo",
        "gοlden", // Greek omicron
        long.as_str(),
    ] {
        add(
            &format!("hostname {v:.20?}"),
            golden_with(|g| g.hostname = v.into()),
        );
    }

    // Storage ids and bridges with `=`, `,`, spaces, traversal, look-alikes.
    for v in [
        "local=x", "local,x", "local x", "", "../local", "lοcal", "local\0", "local٣",
    ] {
        add(
            &format!("storage {v:?}"),
            golden_with(|g| g.storage = v.into()),
        );
    }
    for v in [
        "vmbr0,firewall=1",
        "vmbr0=x",
        "vmbr 0",
        "../vmbr0",
        "vmbr0\n",
        "vmbr0/x",
        "vmbr٠",
        "",
    ] {
        add(
            &format!("bridge {v:?}"),
            golden_with(|g| g.bridge = v.into()),
        );
    }
    add(
        "bridge over-long",
        golden_with(|g| g.bridge = "v".repeat(100)),
    );

    // Filesystem UUIDs of the wrong shape, and mount names.
    let good_uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    for u in [
        "",
        "../../dev/sda",
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4",
        "0a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d",
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d-",
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4g",
        "０a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "1234-ABCD\0",
        "1234_ABCD",
        "12345-ABCD",
    ] {
        add(
            &format!("uuid {u:?}"),
            Shadow::UsbMount {
                req: UsbMount {
                    uuid: u.into(),
                    name: "backup1".into(),
                },
            },
        );
    }
    for n in [
        "../x",
        "a/b",
        ".",
        "..",
        "",
        "a\0",
        "a\nb",
        "ａ",
        "a b",
        long.as_str(),
    ] {
        add(
            &format!("mount name {n:.20?}"),
            Shadow::UsbMount {
                req: UsbMount {
                    uuid: good_uuid.into(),
                    name: n.into(),
                },
            },
        );
    }
    for n in ["../etc", "/", "x/../../y", "."] {
        add(
            &format!("unmount name {n:?}"),
            Shadow::UsbUnmount { name: n.into() },
        );
    }

    // Disk names: partitions, loop, dm, RAM disks, traversal, look-alikes.
    for d in [
        "sda1",
        "nvme0n1p1",
        "mmcblk0p2",
        "loop0",
        "dm-0",
        "zram0",
        "md127",
        "sr0",
        "..",
        "../sda",
        "/dev/sda",
        "sda\0",
        "ｓda",
        "sda١",
        "SDA",
        "",
    ] {
        add(&format!("disk {d:?}"), Shadow::SmartRead { disk: d.into() });
    }
    cases
}

#[test]
fn every_hostile_value_is_refused_at_decode_and_no_tool_runs() {
    let h = match HelperHarness::start(HelperHarnessOptions::default()) {
        Ok(h) => h,
        Err(e) if !std::path::Path::new("/usr/bin/systemd-socket-activate").exists() => {
            println!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    h.add_fake_disk("sda", r#"{"smartctl":{"exit_status":0}}"#, 0);
    let cases = hostile_cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut refused = 0;
    for (what, msg) in &cases {
        let bytes = frame(msg.clone());
        assert!(
            bytes.len() <= MAX_REQUEST_FRAME + 4,
            "{what}: frame too big"
        );
        let reply = exchange(&h, &bytes);
        assert!(
            reply.is_empty(),
            "{what}: the helper answered (it got past decode): {} bytes",
            reply.len()
        );
        refused += 1;
    }
    let calls = h.tool_calls();
    println!(
        "{} hostile cases sent as real frames, {refused} refused at decode, {} tool executions",
        cases.len(),
        calls.len()
    );
    assert_eq!(calls.len(), 0, "a hostile request ran a tool: {calls:?}");
    let log = h.log();
    for op in [
        "golden_image_create",
        "usb_mount",
        "usb_unmount",
        "smart_read",
    ] {
        assert!(
            !log.contains(&format!("op=\"{op}\"")) && !log.contains(&format!("op={op}")),
            "an operation ran: {log}"
        );
    }

    // Controls: the same encoding with valid values is decoded and runs its tool, so the
    // refusals above come from the values, not from a wrong layout.
    let reply = exchange(&h, &frame(Shadow::SmartRead { disk: "sda".into() }));
    assert!(!reply.is_empty(), "a valid smart_read got no reply");
    let reply = exchange(&h, &frame(Shadow::GoldenImageCreate { req: good_golden() }));
    assert!(
        !reply.is_empty(),
        "a valid golden_image_create got no reply"
    );
    let calls = h.tool_calls();
    assert!(
        calls.iter().any(|c| c[0] == "smartctl") && calls.iter().any(|c| c[0] == "pct"),
        "the controls did not run their tools: {calls:?}"
    );
}
