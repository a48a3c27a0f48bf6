//! The simulator's SDN IPAM: which guest a MAC address's IP/DHCP reservation belongs to.

use serde_json::{Map, Value};

/// The `hwaddr=` of a `netN` value, upper-cased.
pub(crate) fn hwaddr(value: &str) -> Option<String> {
    value
        .split(',')
        .find_map(|o| o.trim().strip_prefix("hwaddr="))
        .map(str::to_ascii_uppercase)
}

/// Every MAC address of a container config's `netN` entries.
pub(crate) fn net_macs(config: &Map<String, Value>) -> Vec<String> {
    config
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("net")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|(_, v)| v.as_str().and_then(hwaddr))
        .collect()
}
