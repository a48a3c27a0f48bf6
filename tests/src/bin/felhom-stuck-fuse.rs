//! felhom-stuck-fuse: a FUSE filesystem that never answers a lookup of `stuck`, to make a
//! process that SIGKILL cannot end — for the helper's containment tests (root only).
//!
//! `felhom-stuck-fuse MOUNTPOINT MARKER` mounts an empty directory on `MOUNTPOINT` (speaking
//! the kernel's FUSE protocol on `/dev/fuse` itself) and serves it. A process that resolves
//! `MOUNTPOINT/stuck` waits for a reply that never comes; the server creates `MARKER` once it
//! has *read* that request. Once the kernel has handed a request to the server, a fatal
//! signal no longer ends the wait: the requester stays in uninterruptible sleep (state `D`)
//! after SIGKILL, as a process stuck on a dead NFS server or disk would. Ending this server
//! (SIGTERM or SIGKILL) closes `/dev/fuse`, which aborts the connection and frees the
//! requester; the mount is left for the test to detach (`umount -l`). Any other name is
//! answered "no such file", and every other request "not implemented", so nothing else on
//! the host that looks into the mount point hangs.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_INIT: u32 = 26;
const FUSE_DESTROY: u32 = 38;
const FUSE_BATCH_FORGET: u32 = 42;

/// `struct fuse_in_header`: len, opcode, unique, nodeid, uid, gid, pid, extlen, padding.
const IN_HEADER: usize = 40;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(a)
}

/// Writes one reply: `struct fuse_out_header` (len, error, unique) and `body`.
fn reply(dev: &mut std::fs::File, unique: u64, error: i32, body: &[u8]) {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&error.to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
    out.extend_from_slice(body);
    // ENOENT: the request was interrupted and is gone; nothing to do.
    let _ = dev.write_all(&out);
}

/// `struct fuse_attr` of the root directory (88 bytes).
fn root_attr() -> Vec<u8> {
    let mut a = Vec::with_capacity(88);
    a.extend_from_slice(&1u64.to_ne_bytes()); // ino
    for _ in 0..5 {
        a.extend_from_slice(&0u64.to_ne_bytes()); // size, blocks, atime, mtime, ctime
    }
    for _ in 0..3 {
        a.extend_from_slice(&0u32.to_ne_bytes()); // atimensec, mtimensec, ctimensec
    }
    a.extend_from_slice(&(libc::S_IFDIR | 0o755).to_ne_bytes()); // mode
    a.extend_from_slice(&2u32.to_ne_bytes()); // nlink
    for _ in 0..5 {
        a.extend_from_slice(&0u32.to_ne_bytes()); // uid, gid, rdev, blksize, flags
    }
    a
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: felhom-stuck-fuse MOUNTPOINT MARKER");
        std::process::exit(2);
    }
    let (mountpoint, marker) = (&args[1], &args[2]);
    let mut dev = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("felhom-stuck-fuse: /dev/fuse: {e}");
            std::process::exit(1);
        }
    };
    let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
    if let Err(e) = nix::mount::mount(
        Some("felhom-stuck"),
        mountpoint.as_str(),
        Some("fuse"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(opts.as_str()),
    ) {
        eprintln!("felhom-stuck-fuse: mount {mountpoint}: {e}");
        std::process::exit(1);
    }
    // (std opens with O_CLOEXEC: the descriptor stays this process's alone.)
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            // ENODEV: unmounted; anything else: give up.
            Err(_) => break,
        };
        if n < IN_HEADER {
            continue;
        }
        let req = &buf[..n];
        let opcode = u32_at(req, 4);
        let unique = u64_at(req, 8);
        let nodeid = u64_at(req, 16);
        match opcode {
            FUSE_INIT if n >= IN_HEADER + 12 => {
                // struct fuse_init_out (64 bytes): major 7, minor 31, the kernel's
                // max_readahead, no flags, max_background 16, congestion 12, max_write 4096,
                // time_gran 1, the rest 0.
                let max_readahead = u32_at(req, IN_HEADER + 8);
                let mut out = Vec::with_capacity(64);
                out.extend_from_slice(&7u32.to_ne_bytes());
                out.extend_from_slice(&31u32.to_ne_bytes());
                out.extend_from_slice(&max_readahead.to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes());
                out.extend_from_slice(&16u16.to_ne_bytes());
                out.extend_from_slice(&12u16.to_ne_bytes());
                out.extend_from_slice(&4096u32.to_ne_bytes());
                out.extend_from_slice(&1u32.to_ne_bytes());
                out.resize(64, 0);
                reply(&mut dev, unique, 0, &out);
            }
            FUSE_LOOKUP => {
                let name = &req[IN_HEADER..];
                let name = name.split(|b| *b == 0).next().unwrap_or_default();
                if nodeid == 1 && name == b"stuck" {
                    // Read and never answered: the requester is stuck from here on.
                    let _ = std::fs::File::create(marker);
                } else {
                    reply(&mut dev, unique, -libc::ENOENT, &[]);
                }
            }
            FUSE_GETATTR if nodeid == 1 => {
                // struct fuse_attr_out: attr_valid, attr_valid_nsec, dummy, attr.
                let mut out = Vec::with_capacity(104);
                out.extend_from_slice(&1u64.to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes());
                out.extend_from_slice(&root_attr());
                reply(&mut dev, unique, 0, &out);
            }
            // No reply is expected to these.
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => {}
            FUSE_DESTROY => {
                reply(&mut dev, unique, 0, &[]);
                break;
            }
            _ => reply(&mut dev, unique, -libc::ENOSYS, &[]),
        }
    }
    // Returning closes /dev/fuse, which aborts the connection (and frees a stuck
    // requester).
}
