#!/usr/bin/env bash
# Fuzz smoke: every cargo-fuzz target builds (stable toolchain, --sanitizer none) and runs for
# a few seconds from its committed seeds with no crash. Bounded: cargo-fuzz install about
# 2 minutes when missing, the instrumented build about 5 minutes cold on 2 cores, then
# FUZZ_SMOKE_SECS (default 10) per target, 10 targets.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked --version 0.13.1 cargo-fuzz
fi
bash fuzz/run-all.sh "${FUZZ_SMOKE_SECS:-10}"
