#!/usr/bin/env bash
# API documentation: `cargo doc` for the whole workspace with every rustdoc warning denied
# (broken intra-doc links, bare URLs, …), then the library example runs against the
# in-process simulator. The doctests themselves run in `cargo test --workspace`.
# Bounded in time: no network, a few seconds of simulated tasks; the build reuses target/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="-D warnings" timeout 900 cargo doc --workspace --no-deps
timeout 300 cargo run -q -p felhom-agent --example pve_tour >/dev/null
echo "docs: cargo doc clean, example pve_tour ran"
