//! felhom-helper: the socket-activated root helper.

fn main() {}
