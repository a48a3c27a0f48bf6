//! Typed Proxmox VE API client.
