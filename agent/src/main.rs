//! felhom-agent binary.

fn main() {}
