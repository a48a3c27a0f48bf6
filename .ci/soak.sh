#!/usr/bin/env bash
# Short fault-injection soak of `felhom-agent run` (tests/src/bin/felhom-soak.rs): 150 cycles
# at a 200 ms interval against the simulator and the real helper with random faults and helper
# kills. Bounded: about 1 minute on 2 cores (debug build, already compiled by `cargo test`);
# the soak itself gives up after a fixed deadline derived from the cycle count.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p felhom-tests --bin felhom-soak -- --cycles "${SOAK_CYCLES:-150}" --seed "${SOAK_SEED:-$RANDOM}"
