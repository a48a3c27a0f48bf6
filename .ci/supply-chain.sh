#!/usr/bin/env bash
# Supply chain: RustSec advisories for the main and the fuzz lock files, offline, against the
# dated snapshot in ../shared/advisory-db (cargo-audit, pinned, installed only when missing:
# about 4 minutes of compiling on a fresh 2-core machine, seconds when present). Licenses,
# sources and duplicate versions are checked by tests/tests/repo/supply_chain.rs in `cargo test`
# (cargo-deny's checks, without compiling cargo-deny). Known, reasoned ignores:
# .cargo/audit.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

db=../shared/advisory-db
if [ ! -d "$db/crates" ]; then
  echo "skipped: no advisory database snapshot at $db"
  exit 0
fi
if ! command -v cargo-audit >/dev/null 2>&1; then
  cargo install --locked --version 0.22.1 cargo-audit
fi
cargo audit --db "$db" --no-fetch --deny warnings
cargo audit --db "$db" --no-fetch --deny warnings --file fuzz/Cargo.lock
