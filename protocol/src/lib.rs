//! The typed allowlist between felhom-agent and felhom-helper.
