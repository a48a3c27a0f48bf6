//! Per-guest and node figures on a par with prometheus-pve-exporter, from what the cycle
//! already reads (`/nodes/{node}/lxc`, `/nodes/{node}/status`, `/version`): no request per
//! guest. The exporter's conventions: units in the names, `_total` counters, `_info`
//! metrics (value 1) carrying the descriptive labels, joined on `vmid`.

use super::{Family, flag};
use crate::report::HealthReport;

/// The lock values Proxmox knows for a container (pve-container's `lock` enum); each guest
/// gets one `felhom_guest_lock_state` series per value (1 for its current lock), like the
/// exporter's `pve_lock_state`. A value outside this list gets its own series.
pub const LOCK_STATES: [&str; 10] = [
    "backup",
    "create",
    "destroyed",
    "disk",
    "fstrim",
    "migrate",
    "mounted",
    "rollback",
    "snapshot",
    "snapshot-delete",
];

/// The guest and node families.
pub(super) fn families(report: &HealthReport, node: &str) -> Vec<Family> {
    let n = ("node", node);
    let mut info = Family::new(
        "felhom_guest_info",
        "Always 1; the container's name, tags (;-separated) and template flag as labels.",
    );
    let mut cpu = Family::new(
        "felhom_guest_cpu_usage_ratio",
        "CPU usage as Proxmox reports it (cpu of /nodes/{node}/lxc).",
    );
    let mut cpu_limit = Family::new(
        "felhom_guest_cpu_limit",
        "CPUs the container may use (cpus).",
    );
    let mut mem = Family::new("felhom_guest_memory_usage_bytes", "Memory used.");
    let mut mem_size = Family::new("felhom_guest_memory_size_bytes", "Memory limit.");
    let mut swap = Family::new("felhom_guest_swap_usage_bytes", "Swap used.");
    let mut swap_size = Family::new("felhom_guest_swap_size_bytes", "Swap limit.");
    let mut disk = Family::new("felhom_guest_disk_usage_bytes", "Root disk used.");
    let mut disk_size = Family::new("felhom_guest_disk_size_bytes", "Root disk size.");
    let mut rx = Family::counter(
        "felhom_guest_network_receive_bytes_total",
        "Network bytes received since the container started.",
    );
    let mut tx = Family::counter(
        "felhom_guest_network_transmit_bytes_total",
        "Network bytes sent since the container started.",
    );
    let mut rd = Family::counter(
        "felhom_guest_disk_read_bytes_total",
        "Block device bytes read since the container started.",
    );
    let mut wr = Family::counter(
        "felhom_guest_disk_written_bytes_total",
        "Block device bytes written since the container started.",
    );
    let mut uptime = Family::new("felhom_guest_uptime_seconds", "Container uptime.");
    let mut lock = Family::new(
        "felhom_guest_lock_state",
        "1 for the container's current config lock (backup, snapshot, …), 0 for the others.",
    );
    let mut node_info = Family::new(
        "felhom_node_info",
        "Always 1; the node's kernel, CPU model and pve-manager version as labels.",
    );
    let mut version_info = Family::new(
        "felhom_version_info",
        "Always 1; the Proxmox VE version, release and repoid (GET /version) as labels.",
    );
    let mut node_cpu = Family::new("felhom_node_cpu_usage_ratio", "Node CPU usage 0..1.");
    let mut node_cpus = Family::new("felhom_node_cpus", "Logical CPUs of the node.");
    let mut node_load = Family::new("felhom_node_load1", "Node load average over 1 minute.");
    let mut node_mem = Family::new("felhom_node_memory_usage_bytes", "Node memory used.");
    let mut node_mem_size = Family::new("felhom_node_memory_size_bytes", "Node memory size.");
    let mut node_root = Family::new(
        "felhom_node_rootfs_usage_bytes",
        "Node root filesystem used.",
    );
    let mut node_root_size = Family::new(
        "felhom_node_rootfs_size_bytes",
        "Node root filesystem size.",
    );
    let mut node_uptime = Family::new("felhom_node_uptime_seconds", "Node uptime.");

    if let Some(list) = &report.guests.data {
        for g in list {
            let vmid = g.vmid.to_string();
            let l = [n, ("vmid", vmid.as_str())];
            info.add(
                &[
                    n,
                    ("vmid", &vmid),
                    ("name", g.name.as_deref().unwrap_or("")),
                    ("tags", g.tags.as_deref().unwrap_or("")),
                    ("template", if g.template { "1" } else { "0" }),
                ],
                1.0,
            );
            let opt = |f: &mut Family, v: Option<f64>| {
                if let Some(v) = v {
                    f.add(&l, v);
                }
            };
            let b = |v: Option<u64>| v.map(|v| v as f64);
            opt(&mut cpu, g.cpu);
            opt(&mut cpu_limit, g.cpus);
            opt(&mut mem, b(g.mem));
            opt(&mut mem_size, b(g.maxmem));
            opt(&mut swap, b(g.swap));
            opt(&mut swap_size, b(g.maxswap));
            opt(&mut disk, b(g.disk));
            opt(&mut disk_size, b(g.maxdisk));
            opt(&mut rx, b(g.netin));
            opt(&mut tx, b(g.netout));
            opt(&mut rd, b(g.diskread));
            opt(&mut wr, b(g.diskwrite));
            opt(&mut uptime, b(g.uptime));
            let current = g.lock.as_deref().unwrap_or("");
            for st in LOCK_STATES {
                lock.add(&[n, ("vmid", &vmid), ("state", st)], flag(st == current));
            }
            if !current.is_empty() && !LOCK_STATES.contains(&current) {
                lock.add(&[n, ("vmid", &vmid), ("state", current)], 1.0);
            }
        }
    }

    if let Some(p) = &report.pve.data {
        let v = &p.version;
        version_info.add(
            &[
                n,
                ("version", &v.version),
                ("release", &v.release),
                ("repoid", &v.repoid),
            ],
            1.0,
        );
        let s = &p.node_status;
        node_info.add(
            &[
                n,
                ("kernel", s.kversion.as_deref().unwrap_or("")),
                ("cpu_model", &s.cpuinfo.model),
                ("pveversion", s.pveversion.as_deref().unwrap_or("")),
            ],
            1.0,
        );
        let l = [n];
        if let Some(c) = s.cpu {
            node_cpu.add(&l, c);
        }
        if let Some(c) = s.cpuinfo.cpus {
            node_cpus.add(&l, c as f64);
        }
        if let Some(x) = s.loadavg.first() {
            node_load.add(&l, *x);
        }
        if s.memory.total > 0 {
            node_mem.add(&l, s.memory.used as f64);
            node_mem_size.add(&l, s.memory.total as f64);
        }
        if s.rootfs.total > 0 {
            node_root.add(&l, s.rootfs.used as f64);
            node_root_size.add(&l, s.rootfs.total as f64);
        }
        if let Some(u) = s.uptime {
            node_uptime.add(&l, u as f64);
        }
    }

    vec![
        info,
        cpu,
        cpu_limit,
        mem,
        mem_size,
        swap,
        swap_size,
        disk,
        disk_size,
        rx,
        tx,
        rd,
        wr,
        uptime,
        lock,
        node_info,
        version_info,
        node_cpu,
        node_cpus,
        node_load,
        node_mem,
        node_mem_size,
        node_root,
        node_root_size,
        node_uptime,
    ]
}
