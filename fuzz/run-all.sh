#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each on the stable toolchain
# (`cargo fuzz run --sanitizer none`) and prints, per target, executions, coverage (libFuzzer's
# `cov` = edges hit, `ft` = features) and crashes, then the totals. Exits non-zero on any crash.
#
#   bash fuzz/run-all.sh SECONDS [TARGET...]
#   FUZZ_PARALLEL=2 bash fuzz/run-all.sh 300      # two targets at a time
#
# Each target starts from its committed seeds (fuzz/corpus/TARGET, read only) plus a working
# corpus (fuzz/corpus-work/TARGET, git-ignored) where new inputs go. Crashing inputs land in
# fuzz/artifacts/TARGET; copy them into fuzz/regressions/TARGET to make them regression
# tests (tests/tests/repo/fuzz_corpus.rs). Logs: fuzz/corpus-work/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:?usage: run-all.sh SECONDS [TARGET...]}
shift
parallel=${FUZZ_PARALLEL:-1}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install --locked --version 0.13.1 cargo-fuzz" >&2
  exit 2
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

echo "building ${#targets[@]} targets (cargo fuzz build --sanitizer none -O)" >&2
cargo fuzz build --fuzz-dir fuzz --sanitizer none -O >&2

mkdir -p fuzz/corpus-work
run_one() {
  local t=$1
  local work=fuzz/corpus-work/$t
  local art=fuzz/artifacts/$t
  mkdir -p "$work" "$art" "fuzz/corpus/$t"
  local before
  before=$(find "$art" -type f | wc -l)
  local rc=0
  cargo fuzz run --fuzz-dir fuzz --sanitizer none -O "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
    >"$work.log" 2>&1 || rc=$?
  local after
  after=$(find "$art" -type f | wc -l)
  local execs cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work.log" | tail -1)
  cov=$(grep -o ' cov: [0-9]*' "$work.log" | tail -1 | grep -o '[0-9]*' || true)
  ft=$(grep -o ' ft: [0-9]*' "$work.log" | tail -1 | grep -o '[0-9]*' || true)
  local crashes=$((after - before))
  if [ "$rc" != 0 ] && [ "$crashes" = 0 ]; then
    crashes=1 # a failure that left no artifact (e.g. a build or startup error) still counts
  fi
  printf '%s %s %s %s %s\n' "$t" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$crashes" >"$work.result"
  echo "done: $t (exit $rc)" >&2
}

running=0
for t in "${targets[@]}"; do
  rm -f "fuzz/corpus-work/$t.result"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

printf '%-22s %14s %8s %8s %8s\n' target execs cov ft crashes
total=0
total_crashes=0
for t in "${targets[@]}"; do
  read -r name execs cov ft crashes <"fuzz/corpus-work/$t.result"
  printf '%-22s %14s %8s %8s %8s\n' "$name" "$execs" "$cov" "$ft" "$crashes"
  total=$((total + execs))
  total_crashes=$((total_crashes + crashes))
done
printf '%-22s %14s %8s %8s %8s\n' TOTAL "$total" - - "$total_crashes"
echo "$(date -u +%Y-%m-%dT%H:%MZ): ${#targets[@]} targets x ${secs}s, $total executions, $total_crashes crashes"
[ "$total_crashes" = 0 ]
