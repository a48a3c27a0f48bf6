#!/usr/bin/env bash
# Mutation testing of the change under test: `cargo mutants --in-diff` on the lines the last
# commit touches in the security-relevant code (the files listed below, as in docs/records.md's
# "Mutation testing" section), with the focused test targets that exercise each area.
#
# Bounded in time, three ways:
#   * only mutants on changed lines of the listed files are generated (`--in-diff`);
#   * at most MUTANTS_CAP (default 4) mutants per area are tested: above that, the first shard
#     of ceil(count / cap) slices is taken, and the script says so;
#   * each mutant's build and tests have fixed timeouts (below), and the whole step runs under
#     `timeout` (MUTANTS_BUDGET seconds, default 900 = 15 min; a helper mutant takes 1-3 min on
#     2 cores: the end-to-end tests rebuild the helper binary).
# Outcome:
#   * a missed mutant on a changed line fails CI (exit 2 of cargo-mutants): a new rule has to
#     arrive with a test that notices when it is broken;
#   * a mutant that makes the tests hang (cargo-mutants exit 3) counts as detected;
#   * if the whole step hits its time budget, CI fails loudly: the run is capped so this means
#     something hangs, and failing keeps CI honest without wedging the 90-minute limit.
# Safety: as root, the mutants' builds and tests run with / mounted read-only except the
# repository, the target directory, the temporary directory and cargo's and rustup's homes
# (.ci/ro-root.sh): a mutant once removed the "mount_root is not /" guard and a test chmodded /.
# Skipped, with the reason printed: no parent commit (single-commit or shallow clone), or the
# last commit does not touch the listed files.
set -euo pipefail
cd "$(dirname "$0")/.."

CAP="${MUTANTS_CAP:-4}"
BUDGET="${MUTANTS_BUDGET:-900}"
VERSION=27.1.0

if ! git rev-parse --verify -q HEAD~1 >/dev/null; then
  echo "mutants: skipped: no parent commit to diff against (single-commit or shallow clone)"
  exit 0
fi

# The mutated files of each area (git pathspecs) and the test targets run for its mutants.
HELPER_FILES=(helper/src/listener.rs helper/src/server.rs helper/src/exec.rs helper/src/config.rs
  'helper/src/ops/*.rs')
AGENT_FILES=(agent/src/pve/error.rs agent/src/pve/tasks.rs agent/src/pve/tls.rs
  agent/src/pve/http.rs agent/src/pve/args.rs agent/src/pve/archive.rs agent/src/secret.rs
  agent/src/config/mod.rs agent/src/config/values.rs agent/src/cli/setconfig.rs)
PROTOCOL_FILES=('protocol/src/*.rs')

# The end-to-end tests are modules of four test binaries (tests/tests/{agent,helper,pve,repo});
# the modules outside an area's focus are skipped by name (`--skip MODULE::`, a substring
# match: these names occur nowhere in the unit tests run alongside).
HELPER_TESTS=(--lib --test=helper)
# Skipped in mutant runs: the helper binary's modules outside this focus (helper_security,
# helper_ops, helper_safety, helper_activation run), and a timing-sensitive flood test that
# can fail under load, which would count any mutant as caught (it still runs in the normal
# test step).
HELPER_SKIP=(helper_audit:: helper_hostile_inputs:: helper_loop_mount:: real_smartctl::
  a_flood_of_hellos_and_refusals_cannot_push_out_an_audit_record)
AGENT_TESTS=(--lib --test=pve --test=agent)
# Run: pve_client, pve_tasks, pve_hostile_server, pve_retry_policy, pve_tls_server_name,
# pve_client_secret, pve_error_text, pve_transport_text, agent_set_config_cli (and the agent
# binary's one-test `logging` module, whose name the agent's unit tests share).
AGENT_SKIP=(pve_client_fixtures:: pve_fakepve:: pve_sim_vs_fakepve:: pve_keepalive:: pve_sim_smoke::
  agent_backup_cli:: agent_cli:: agent_e2e:: agent_fence:: agent_metrics:: agent_service::
  agent_smart_fixtures:: agent_tasks_cli:: agent_tls_expiry::)
PROTOCOL_TESTS=(--lib --test=wire --test=names --test=limits --test=repo)
# Run: the repo binary's fuzz_corpus.
PROTOCOL_SKIP=(supply_chain:: man_pages:: layout:: repo_links::)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

declare -a todo=()
for area in helper agent protocol; do
  case "$area" in
    helper) files=("${HELPER_FILES[@]}") ;;
    agent) files=("${AGENT_FILES[@]}") ;;
    protocol) files=("${PROTOCOL_FILES[@]}") ;;
  esac
  git diff HEAD~1 HEAD -- "${files[@]}" >"$work/$area.diff"
  if [ -s "$work/$area.diff" ]; then
    todo+=("$area")
  fi
done
if [ "${#todo[@]}" = 0 ]; then
  echo "mutants: skipped: the last commit does not touch the mutation-tested files"
  exit 0
fi

if ! command -v cargo-mutants >/dev/null 2>&1; then
  cargo install --locked cargo-mutants --version "$VERSION"
fi

# Each area's report (caught.txt, missed.txt, logs per mutant) stays in target/mutants-ci/.
out=target/mutants-ci
rm -rf "$out"
mkdir -p "$out"

deadline=$(($(date +%s) + BUDGET))
status=0
for area in "${todo[@]}"; do
  case "$area" in
    helper) pkg=felhom-helper; tests=("${HELPER_TESTS[@]}") ;;
    agent) pkg=felhom-agent; tests=("${AGENT_TESTS[@]}") ;;
    protocol) pkg=felhom-protocol; tests=("${PROTOCOL_TESTS[@]}") ;;
  esac
  common=(--in-diff "$work/$area.diff" -p "$pkg" --test-package "$pkg,felhom-tests")
  for t in "${tests[@]}"; do common+=(-C "$t"); done
  case "$area" in
    helper) skips=("${HELPER_SKIP[@]}") ;;
    agent) skips=("${AGENT_SKIP[@]}") ;;
    protocol) skips=("${PROTOCOL_SKIP[@]}") ;;
  esac
  skip=(--cargo-test-arg=--)
  for t in "${skips[@]}"; do skip+=(--cargo-test-arg=--skip "--cargo-test-arg=$t"); done

  count=$(cargo mutants --list "${common[@]}" | wc -l)
  echo "mutants: $area: $count mutants on the changed lines"
  [ "$count" = 0 ] && continue
  shard=()
  if [ "$count" -gt "$CAP" ]; then
    slices=$(((count + CAP - 1) / CAP))
    shard=(--shard "0/$slices")
    echo "mutants: $area: more than $CAP; testing the first of $slices slices"
  fi

  left=$((deadline - $(date +%s)))
  if [ "$left" -le 60 ]; then
    echo "mutants: FAILED: time budget of ${BUDGET}s used up before the $area run" >&2
    exit 1
  fi
  # The unmutated tests already passed in the CI step before this one: no baseline run, so
  # the timeouts are fixed rather than derived from it. SIGINT lets cargo-mutants restore the
  # source of a mutant it is testing when the budget runs out.
  set +e
  # As root, under .ci/ro-root.sh: / is read-only for the mutants' builds and tests, so a
  # mutant that breaks a path check cannot chmod or write the host.
  timeout -s INT -k 60 "$left" bash .ci/ro-root.sh \
    cargo mutants "${common[@]}" "${shard[@]}" "${skip[@]}" \
    --in-place --baseline skip --timeout 300 --build-timeout 600 --no-shuffle -o "$out/$area"
  rc=$?
  set -e
  case "$rc" in
    0) ;;
    2)
      echo "mutants: FAILED: $area: missed mutants on changed lines (add a test that kills them):" >&2
      cat "$out/$area/mutants.out/missed.txt" >&2
      status=1
      ;;
    3) echo "mutants: $area: some mutants made the tests hang (counted as detected):" &&
      cat "$out/$area/mutants.out/timeout.txt" ;;
    124 | 130 | 137)
      echo "mutants: FAILED: time budget of ${BUDGET}s exceeded during the $area run" >&2
      exit 1
      ;;
    *)
      echo "mutants: FAILED: cargo mutants exited $rc in the $area run" >&2
      exit 1
      ;;
  esac
done
exit "$status"
