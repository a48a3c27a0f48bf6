//! The Proxmox VE simulator as a standalone binary.

fn main() {}
