#!/usr/bin/env bash
# Real host tools the tests use where the machine can have them (called by .ci/run before the
# tests, as root on Debian; a no-op elsewhere):
#   smartmontools  the real smartctl for tests/tests/helper/real_smartctl.rs (real helper, real disks)
#   prometheus     promtool, for `promtool check metrics` on the agent's metrics file
#                  (tests/tests/agent/agent_metrics.rs)
#   groff-base     groff, for the man page check of tests/tests/repo/man_pages.rs
# The prometheus package would start a Prometheus server from its maintainer script: a
# temporary policy-rc.d (exit 101, "action forbidden") keeps it stopped, and is removed
# afterwards unless one was already there. Bounded: apt-get waits at most 300 s for the dpkg
# lock and the whole install gets 600 s.
set -euo pipefail

[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || { echo "SKIP: host tools need root and apt-get"; exit 0; }

pkgs=()
[ -x /usr/sbin/smartctl ] || pkgs+=(smartmontools)
[ -x /usr/bin/promtool ] || pkgs+=(prometheus)
command -v groff >/dev/null 2>&1 || pkgs+=(groff-base)
if [ "${#pkgs[@]}" = 0 ]; then
  echo "host tools present: $(/usr/sbin/smartctl --version | head -n 1); $(/usr/bin/promtool --version 2>&1 | head -n 1)"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# felhom CI: do not start services while installing host tools.\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "installing: ${pkgs[*]}"
DEBIAN_FRONTEND=noninteractive timeout -k 30 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
  --no-install-recommends "${pkgs[@]}" >/dev/null
/usr/sbin/smartctl --version | head -n 1
/usr/bin/promtool --version 2>&1 | head -n 1
