//! A stateful Proxmox VE API simulator over HTTPS for tests and the sandbox.
