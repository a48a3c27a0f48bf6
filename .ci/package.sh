#!/usr/bin/env bash
# Debian package build and checks (called by .ci/run). Never touches the host's system:
#   1. builds both release binaries, the man pages and completions (cargo xtask gen-docs) and the
#      .deb with cargo-deb (installed from crates.io with
#      `cargo install cargo-deb --locked --version 3.8.0` when missing);
#   2. prints its control data and contents (dpkg-deb -I / -c);
#   3. extracts it into a throwaway root and checks that every file lands where the units,
#      the sysusers/tmpfiles entries and the maintainer scripts expect it, then runs
#      `systemd-analyze verify` on the packaged units against the packaged binaries;
#   4. as root: applies the packaged sysusers.d/tmpfiles.d entries to that root (--root=) and
#      checks /run/felhom's owner and mode;
#   5. runs the maintainer scripts against that root (DPKG_ROOT) with systemctl,
#      deb-systemd-helper and friends replaced by recording stubs, and checks what they do on
#      install, configured install, upgrade, remove and purge;
#   6. as root, unless FELHOM_CI_BOOT_TEST=0: debootstraps a scratch Debian 12, boots a real
#      systemd as PID 1 in it (own mount, PID, network, IPC, UTS and cgroup namespaces, after
#      pivot_root, in child cgroups of its own that are removed afterwards, so nothing
#      reaches the host; bounded by FELHOM_BOOT_TEST_TIMEOUT, debootstrap by
#      FELHOM_DEBOOTSTRAP_TIMEOUT), installs the package with apt, and checks the
#      user, /run/felhom, the socket, the sandboxes (the helper shares PID 1's mount namespace
#      and its mounts are visible there, as does the running socket-activated helper;
#      felhom-sandbox-run sees drop-ins), the agent running against the Proxmox simulator,
#      the journal (the helper's audit entries with FELHOM_* fields and MESSAGE_ID, agent
#      lines without escape characters), the audit under a flood (a 10 s flood of every cheap
#      call and of connections from three uids, with 20 mutating calls in it: all 20 records
#      in the journal, no gap in the helper's FELHOM_SEQ, and no "Suppressed N messages from
#      felhom-helper"), the metrics file, `man -w`, upgrade and purge.
#      Infrastructure problems (no mirror, no namespaces) make it a SKIP.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
note() { printf '  %s\n' "$*"; }
is_root() { [ "$(id -u)" = 0 ]; }

# ---- tools ------------------------------------------------------------------------------
if is_root && command -v apt-get >/dev/null 2>&1; then
  # dpkg-dev: dpkg-shlibdeps, which cargo-deb uses to compute Depends ($auto).
  missing=()
  command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
command -v dpkg-deb >/dev/null 2>&1 || { echo "SKIP: dpkg-deb is not available (not a Debian system)"; exit 0; }
# Pinned: the package layout checks below are written against this version's behaviour.
CARGO_DEB_VERSION=3.8.0
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "--- cargo install cargo-deb --locked --version $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
fi
note "$(cargo deb --version 2>/dev/null || echo cargo-deb)"

# ---- build ------------------------------------------------------------------------------
echo "--- build"
# Each binary on its own, so the helper gets only the dependency features it asks for
# (built together, cargo would give it the agent's: clap's colours and suggestions).
cargo build --release --quiet -p felhom-helper
cargo build --release --quiet -p felhom-agent
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
out_dir="$target_dir/debian"
mkdir -p "$out_dir"
# Man pages and completions, rendered from the clap definitions (never drift from --help);
# the package's assets take them from target/release/felhom-docs.
echo "--- man pages and completions (cargo xtask gen-docs)"
docs="$target_dir/release/felhom-docs"
rm -rf "$docs"
cargo xtask gen-docs --out "$docs"
gzip -9n "$docs"/man/*
note "$(find "$docs" -type f | wc -l) files in $docs"
deb=$(cargo deb -p felhom-agent --no-build --quiet --output "$out_dir" | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not produce a package (got '$deb')"
note "built $deb"

echo "--- dpkg-deb -I"
dpkg-deb -I "$deb"
echo "--- dpkg-deb -c"
dpkg-deb -c "$deb"

work=$(mktemp -d)
# The boot test (section 6) registers what it started here, so that an early exit, a failed
# check, Ctrl-C or a TERM from the CI runner still ends the scratch system and removes its
# cgroups.
BOOT_USH="" BOOT_SD="" BOOT_CGS=()
cleanup() {
  boot_stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
root="$work/root"
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$work/control"

# ---- files land where the units expect them ----------------------------------------------
echo "--- package layout"
# path mode
expect_file() {
  local path=$1 mode=$2 actual
  [ -f "$root$path" ] || fail "missing in package: $path"
  actual=$(stat -c '%a' "$root$path")
  [ "$actual" = "$mode" ] || fail "$path has mode $actual, expected $mode"
  note "ok: $path ($mode)"
}
expect_file /usr/bin/felhom-agent 755
expect_file /usr/libexec/felhom/felhom-helper 755
expect_file /usr/libexec/felhom/felhom-sandbox-run 755
expect_file /usr/lib/systemd/system/felhom-agent.service 644
expect_file /usr/lib/systemd/system/felhom-helper.service 644
expect_file /usr/lib/systemd/system/felhom-helper.socket 644
expect_file /usr/lib/sysusers.d/felhom-agent.conf 644
expect_file /usr/lib/tmpfiles.d/felhom-agent.conf 644
expect_file /etc/felhom/helper.json 644
expect_file /etc/felhom/agent.json.example 644
expect_file /usr/share/doc/felhom-agent/README.md 644
expect_file /usr/share/doc/felhom-agent/docs/install.md 644
expect_file /usr/share/doc/felhom-agent/docs/guide.md 644
expect_file /usr/share/doc/felhom-agent/docs/helper.md 644
expect_file /usr/share/doc/felhom-agent/docs/security.md 644
expect_file /usr/share/man/man1/felhom-agent.1.gz 644
expect_file /usr/share/man/man1/felhom-agent-smart.1.gz 644
expect_file /usr/share/man/man8/felhom-helper.8.gz 644
expect_file /usr/share/bash-completion/completions/felhom-agent 644
expect_file /usr/share/zsh/vendor-completions/_felhom-agent 644
expect_file /usr/share/fish/vendor_completions.d/felhom-agent.fish 644
# Every page cargo xtask gen-docs rendered is in the package (one per subcommand).
[ "$(find "$root/usr/share/man/man1" -name 'felhom-agent*.1.gz' | wc -l)" = "$(find "$docs/man" -name '*.1.gz' | wc -l)" ] ||
  fail "the package lacks some of the man pages in $docs/man"
gzip -dc "$root/usr/share/man/man8/felhom-helper.8.gz" | grep -q '^\.TH FELHOM-HELPER 8' || fail "felhom-helper.8 is not a section 8 page"
# The operator's files are not in the package: postinst must not find agent.json and start
# an unconfigured agent, and the token never ships.
[ ! -e "$root/etc/felhom/agent.json" ] || fail "the package must not ship /etc/felhom/agent.json"
[ ! -e "$root/etc/felhom/pve-token" ] || fail "the package must not ship /etc/felhom/pve-token"
for c in /etc/felhom/helper.json /etc/felhom/agent.json.example; do
  grep -qx "$c" "$work/control/conffiles" || fail "$c is not a conffile"
done
note "ok: conffiles: $(tr '\n' ' ' < "$work/control/conffiles")"
grep -q '^Depends:.*systemd' "$work/control/control" || fail "Depends lacks systemd"

unitdir="$root/usr/lib/systemd/system"
# Every ExecStart= binary of the packaged units exists in the package and is executable.
while read -r bin; do
  [ -x "$root$bin" ] || fail "ExecStart binary $bin is not in the package"
  note "ok: ExecStart $bin is packaged"
done < <(sed -n 's/^ExecStart=[-@+!:]*\([^ ]*\).*/\1/p' "$unitdir"/felhom-*.service)
# The paths the units, configs and maintainer scripts share agree with each other.
sock=$(sed -n 's/^ListenStream=//p' "$unitdir/felhom-helper.socket")
[ "$sock" = /run/felhom/helper.sock ] || fail "socket path is '$sock'"
grep -q "\"helper_socket\": \"$sock\"" "$root/etc/felhom/agent.json.example" || fail "agent.json.example helper_socket != $sock"
grep -q '^d /run/felhom 0750 root felhom-agent' "$root/usr/lib/tmpfiles.d/felhom-agent.conf" || fail "tmpfiles entry for /run/felhom"
grep -q '^SocketGroup=felhom-agent$' "$unitdir/felhom-helper.socket" || fail "socket group"
grep -q '^u felhom-agent ' "$root/usr/lib/sysusers.d/felhom-agent.conf" || fail "sysusers entry"
grep -q '^User=felhom-agent$' "$unitdir/felhom-agent.service" || fail "agent User="
grep -q '^LoadCredential=pve-token:/etc/felhom/pve-token$' "$unitdir/felhom-agent.service" || fail "agent LoadCredential="
grep -q '^ExecStart=/usr/bin/felhom-agent --config /etc/felhom/agent.json run$' "$unitdir/felhom-agent.service" || fail "agent ExecStart="
grep -q '^ExecStart=/usr/libexec/felhom/felhom-helper --config /etc/felhom/helper.json$' "$unitdir/felhom-helper.service" || fail "helper ExecStart="
grep -q '"agent_user": "felhom-agent"' "$root/etc/felhom/helper.json" || fail "helper.json agent_user"
if command -v python3 >/dev/null 2>&1; then
  for j in "$root/etc/felhom/helper.json" "$root/etc/felhom/agent.json.example"; do
    python3 -m json.tool "$j" >/dev/null || fail "$j is not valid JSON"
  done
  note "ok: example configs are valid JSON"
fi
note "ok: socket, group, user, credential and config paths agree"

echo "--- maintainer scripts"
for s in postinst prerm postrm; do
  [ -x "$work/control/$s" ] || fail "maintainer script $s missing or not executable"
  sh -n "$work/control/$s" || fail "$s: shell syntax error"
  ! grep -q '#DEBHELPER#' "$work/control/$s" || fail "$s still contains #DEBHELPER#"
  if command -v checkbashisms >/dev/null 2>&1; then checkbashisms "$work/control/$s"; fi
  if command -v shellcheck >/dev/null 2>&1; then shellcheck -s sh "$work/control/$s"; fi
  note "ok: $s (sh -n)"
done

echo "--- felhom-sandbox-run (the operator's sandbox check) builds its command from the units"
for which in agent helper; do
  line=$(FELHOM_UNIT_DIR="$unitdir" "$root/usr/libexec/felhom/felhom-sandbox-run" --print "$which" /bin/true)
  case "$line" in *ExecStart*|*WatchdogSec*|*Restart=*) fail "sandbox-run $which passes lifecycle directives: $line" ;; esac
  case "$line" in *"-p NoNewPrivileges=yes"*"-p SystemCallFilter="*"-- /bin/true "*) ;; *) fail "sandbox-run $which: $line" ;; esac
done
line=$(FELHOM_UNIT_DIR="$unitdir" "$root/usr/libexec/felhom/felhom-sandbox-run" --print agent /bin/true)
case "$line" in *"-p User=felhom-agent"*"-p LoadCredential=pve-token:/etc/felhom/pve-token"*"-p PrivateUsers=yes"*) ;; *) fail "sandbox-run agent: $line" ;; esac
line=$(FELHOM_UNIT_DIR="$unitdir" "$root/usr/libexec/felhom/felhom-sandbox-run" --print helper /bin/true)
case "$line" in *"-p CapabilityBoundingSet=CAP_SYS_ADMIN"*) ;; *) fail "sandbox-run helper: $line" ;; esac
case "$line" in *Protect[SK]*|*Private[MDT]*) fail "sandbox-run helper carries a mount-namespace directive: $line" ;; esac
note "ok: agent and helper sandboxes reproduced without lifecycle directives"

echo "--- systemd-analyze verify on the packaged units"
if command -v systemd-analyze >/dev/null 2>&1; then
  vroot="$work/vroot"
  cp -a "$root" "$vroot"
  cp -an /usr/lib/systemd/system/. "$vroot/usr/lib/systemd/system/" 2>/dev/null || true
  out=$(cd "$vroot/usr/lib/systemd/system" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify \
          --root="$vroot" felhom-agent.service felhom-helper.service felhom-helper.socket 2>&1) ||
    { printf '%s\n' "$out"; fail "verify failed"; }
  [ -z "$out" ] || { printf '%s\n' "$out"; fail "verify reported problems"; }
  note "ok: packaged units verify against the packaged binaries"
else
  echo "SKIP: systemd-analyze not installed"
fi

echo "--- sysusers.d and tmpfiles.d applied to the throwaway root"
if is_root && command -v systemd-sysusers >/dev/null 2>&1 && command -v systemd-tmpfiles >/dev/null 2>&1; then
  troot="$work/troot"
  cp -a "$root" "$troot"
  mkdir -p "$troot/etc" "$troot/run"
  systemd-sysusers --root="$troot" "$troot/usr/lib/sysusers.d/felhom-agent.conf" >/dev/null 2>&1
  grep -q '^felhom-agent:x:[0-9]*:[0-9]*:.*:/usr/sbin/nologin$' "$troot/etc/passwd" || fail "sysusers did not create the user"
  systemd-tmpfiles --root="$troot" --create "$troot/usr/lib/tmpfiles.d/felhom-agent.conf"
  gid=$(awk -F: '$1 == "felhom-agent" {print $3}' "$troot/etc/group")
  [ "$(stat -c '%a %u:%g' "$troot/run/felhom")" = "750 0:$gid" ] ||
    fail "/run/felhom is $(stat -c '%a %u:%g' "$troot/run/felhom"), expected 750 0:$gid"
  note "ok: user felhom-agent created, /run/felhom 0750 root:felhom-agent"
else
  echo "SKIP: needs root (chown into the throwaway root) and systemd-sysusers/systemd-tmpfiles"
fi

echo "--- maintainer scripts against the throwaway root, with recording stubs"
sroot="$work/sroot"
cp -a "$root" "$sroot"
mkdir -p "$sroot/run/systemd/system" "$sroot/var/lib/felhom-agent" "$sroot/var/lib/felhom-helper"
case "$sroot" in "$work"/*) ;; *) fail "refusing to run maintainer scripts outside the work dir" ;; esac
stubs="$work/stubs"
log="$work/calls.log"
mkdir -p "$stubs"
for cmd in systemctl deb-systemd-helper deb-systemd-invoke systemd-sysusers systemd-tmpfiles adduser getent install; do
  cat > "$stubs/$cmd" <<STUB
#!/bin/sh
echo "$cmd \$*" >> "$log"
exit 0
STUB
  chmod +x "$stubs/$cmd"
done
# run_script NAME ARGS...: runs a packaged maintainer script against $sroot.
run_script() {
  local name=$1; shift
  : > "$log"
  env PATH="$stubs:/usr/bin:/bin" DPKG_ROOT="$sroot" sh "$work/control/$name" "$@" >/dev/null 2>&1 ||
    fail "$name $* exited non-zero"
}
has() { grep -qxF -- "$1" "$log" || { cat "$log"; fail "expected call: $1"; }; }
lacks() { ! grep -qF -- "$1" "$log" || { cat "$log"; fail "unexpected call: $1"; }; }

run_script postinst configure ""
has "systemd-sysusers --root=$sroot $sroot/usr/lib/sysusers.d/felhom-agent.conf"
has "systemd-tmpfiles --root=$sroot --create $sroot/usr/lib/tmpfiles.d/felhom-agent.conf"
has "deb-systemd-helper enable felhom-helper.socket"
has "deb-systemd-helper enable felhom-agent.service"
has "deb-systemd-invoke start felhom-helper.socket"
lacks "felhom-helper.service"
lacks "start felhom-agent.service"
note "ok: fresh install: user, /run/felhom, units enabled, socket started, agent NOT started (no config)"

echo '{}' > "$sroot/etc/felhom/agent.json"
run_script postinst configure ""
lacks "start felhom-agent.service"
note "ok: agent.json without the token: agent not started"

echo 'secret' > "$sroot/etc/felhom/pve-token"
run_script postinst configure ""
has "deb-systemd-invoke start felhom-agent.service"
note "ok: configured install: agent started"

run_script postinst configure 0.0.9-1
has "deb-systemd-invoke try-restart felhom-helper.service"
has "deb-systemd-invoke try-restart felhom-agent.service"
lacks "invoke start felhom-agent.service"
note "ok: upgrade: helper and agent try-restarted"

rm "$sroot/etc/felhom/pve-token"
run_script postinst configure 0.0.9-1
has "deb-systemd-invoke try-restart felhom-agent.service"
lacks "invoke start felhom-agent.service"
note "ok: upgrade without the token: a running agent is still restarted (no old agent against the new helper)"
echo 'secret' > "$sroot/etc/felhom/pve-token"

run_script prerm upgrade 0.2.0-1
lacks "stop"
run_script prerm remove
[ "$(grep -c '^deb-systemd-invoke stop' "$log")" = 3 ] || { cat "$log"; fail "prerm remove must stop 3 units"; }
head -n 1 "$log" | grep -qx 'deb-systemd-invoke stop felhom-agent.service' || fail "prerm must stop the agent first"
note "ok: prerm: nothing stopped on upgrade; agent, socket, helper stopped on remove"

run_script postrm remove
[ -d "$sroot/etc/felhom" ] || fail "postrm remove deleted /etc/felhom"
run_script postrm purge
has "deb-systemd-helper purge felhom-agent.service"
has "deb-systemd-helper purge felhom-helper.socket"
for d in /etc/felhom /var/lib/felhom-agent /var/lib/felhom-helper; do
  [ ! -e "$sroot$d" ] || fail "postrm purge left $d"
done
lacks "userdel"
note "ok: postrm: remove keeps config; purge removes /etc/felhom, state dirs, unit state (user kept)"

# ---- 6. a real systemd boots a scratch system and installs the package -------------------
boot_skip() { echo "SKIP (boot test): $*"; return 2; }

# boot_cgroups_create: an empty child cgroup, felhom-ci-boot.PID, below this script's own
# cgroup in every hierarchy mounted under /sys/fs/cgroup (BOOT_CGS, with the mount point in
# BOOT_CG_MNTS). The boot subshell moves itself into them before unshare, so the cgroup
# namespace and the bind-mounted /sys/fs/cgroup of the scratch system are rooted there and
# its systemd (init.scope, system.slice, …) never writes to the host's cgroup roots.
BOOT_CG_MNTS=()
boot_cgroups_create() {
  local id ctrls path mnt child f
  while IFS=: read -r id ctrls path; do
    if [ -z "$ctrls" ]; then
      mnt=$(findmnt -rn -t cgroup2 -o TARGET | grep -m 1 '^/sys/fs/cgroup' || true)
    else
      mnt=$(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk -v c="${ctrls%%,*}" '
        $1 ~ "^/sys/fs/cgroup" { n = split($2, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) { print $1; exit } }')
    fi
    [ -n "$mnt" ] || continue
    child="$mnt${path%/}/felhom-ci-boot.$$"
    mkdir "$child" || return 1
    BOOT_CGS+=("$child")
    BOOT_CG_MNTS+=("$mnt")
    # cgroup v1 cpuset: a new group has no CPUs or memory nodes until given its parent's.
    for f in cpuset.cpus cpuset.mems; do
      [ -f "$child/$f" ] && cat "${child%/*}/$f" > "$child/$f"
    done
  done < /proc/self/cgroup
  [ "${#BOOT_CGS[@]}" -gt 0 ]
}

# boot_stop: kills the scratch system (unshare, its PID 1 and anything left in its cgroups)
# and removes its cgroups bottom-up. Safe to call more than once.
boot_stop() {
  local p cg _
  for p in $BOOT_SD $BOOT_USH; do kill -KILL "$p" 2>/dev/null || true; done
  [ -z "$BOOT_USH" ] || wait "$BOOT_USH" 2>/dev/null || true
  if [ "${#BOOT_CGS[@]}" -gt 0 ]; then
    for _ in $(seq 50); do
      p=$(for cg in "${BOOT_CGS[@]}"; do [ -d "$cg" ] && find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
      [ -n "$p" ] || break
      # Only processes of the scratch system can be in these groups.
      kill -KILL $p 2>/dev/null || true
      sleep 0.2
    done
    for cg in "${BOOT_CGS[@]}"; do
      [ -d "$cg" ] || continue
      for _ in $(seq 25); do
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ -d "$cg" ] || break
        sleep 0.2
      done
      [ ! -d "$cg" ] || echo "  warning: could not remove the boot test's cgroup $cg" >&2
    done
  fi
  BOOT_USH="" BOOT_SD="" BOOT_CGS=() BOOT_CG_MNTS=()
}

boot_test() {
  local vm="$work/vm" broot="$work/vm/root" sd_pid="" ush
  # The whole boot test (debootstrap included) has FELHOM_BOOT_TEST_TIMEOUT seconds.
  local boot_deadline=$((SECONDS + ${FELHOM_BOOT_TEST_TIMEOUT:-900}))
  command -v unshare >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 || { boot_skip "unshare/nsenter missing"; return; }
  if ! command -v debootstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 ||
      { boot_skip "cannot install debootstrap"; return; }
  fi
  mkdir -p "$vm"
  # A slow or black-holed mirror must not hold CI for long: debootstrap gets
  # FELHOM_DEBOOTSTRAP_TIMEOUT seconds (default 600), then TERM, then KILL 30 s later.
  local dbs_timeout=${FELHOM_DEBOOTSTRAP_TIMEOUT:-600} rc=0
  echo "  debootstrap bookworm (minbase + systemd, man-db, at most ${dbs_timeout}s) ..."
  timeout -k 30 "$dbs_timeout" debootstrap --variant=minbase --include=systemd,dbus,man-db bookworm "$broot" \
        "${FELHOM_DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$vm/debootstrap.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 5 "$vm/debootstrap.log"
    case "$rc" in
      124|137) boot_skip "debootstrap did not finish within ${dbs_timeout}s (slow or unreachable mirror; FELHOM_DEBOOTSTRAP_TIMEOUT)" ;;
      *) boot_skip "debootstrap failed with status $rc (mirror unreachable or incomplete?)" ;;
    esac
    return
  fi
  cp "$deb" "$broot/root/felhom-agent.deb"
  # The simulated Proxmox API for the agent. Always (re)built: cargo only relinks when the
  # sources changed, and a stale binary left in target/ by an older checkout is not the sim.
  local sim="$target_dir/debug/felhom-pve-sim"
  cargo build --quiet -p felhom-tests --bin felhom-pve-sim >/dev/null 2>&1 || rm -f "$sim"
  [ -x "$sim" ] && cp "$sim" "$broot/root/felhom-pve-sim"
  # The flood client of the audit check (tests/src/bin/felhom-flood.rs).
  local flood="$target_dir/debug/felhom-flood"
  cargo build --quiet -p felhom-tests --bin felhom-flood >/dev/null 2>&1 || rm -f "$flood"
  [ -x "$flood" ] && cp "$flood" "$broot/root/felhom-flood"

  boot_cgroups_create || { boot_stop; boot_skip "cannot create a child cgroup for the scratch system"; return; }
  local cg_mounts="" i l
  for i in "${!BOOT_CGS[@]}"; do
    cg_mounts+="mkdir -p \$R${BOOT_CG_MNTS[$i]}; mount --bind ${BOOT_CGS[$i]} \$R${BOOT_CG_MNTS[$i]}"$'\n'
  done
  for l in /sys/fs/cgroup/*; do
    [ -L "$l" ] && cg_mounts+="ln -s $(readlink "$l") \$R$l"$'\n'
  done
  cat > "$vm/boot.sh" <<BOOT
#!/bin/bash
# Runs in fresh mount/PID/net/IPC/UTS/cgroup namespaces; nothing here is visible on the host.
set -e
R=$broot
mount --make-rprivate /
mount --bind \$R \$R
mount -t proc proc \$R/proc
mount -t sysfs sysfs \$R/sys
# Only the boot test's own child cgroups (see boot_cgroups_create), never the host's roots.
mount -t tmpfs -o mode=755 cgroup \$R/sys/fs/cgroup
${cg_mounts}mount -t tmpfs -o mode=755 tmpfs \$R/dev
for d in null zero full random urandom tty; do touch \$R/dev/\$d; mount --bind /dev/\$d \$R/dev/\$d; done
mkdir -p \$R/dev/pts \$R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts \$R/dev/pts
ln -sf pts/ptmx \$R/dev/ptmx
mount -t tmpfs tmpfs \$R/run
mount -t tmpfs tmpfs \$R/tmp
hostname felhom-ci
cd \$R
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot || true
# systemd makes / shared itself on a real host; it does not inside a container.
mount --make-rshared /
exec /usr/bin/env -i container=felhom-ci /lib/systemd/systemd
BOOT
  chmod +x "$vm/boot.sh"
  # The subshell joins the child cgroups, then becomes unshare; --kill-child: if unshare
  # dies, the namespace's PID 1 (and with it everything in the namespace) is killed too.
  (
    for cg in "${BOOT_CGS[@]}"; do
      echo "$BASHPID" > "$cg/cgroup.procs" || { echo "cannot join $cg"; exit 97; }
    done
    exec unshare --pid --fork --kill-child --mount --uts --ipc --net --cgroup "$vm/boot.sh"
  ) > "$vm/boot.log" 2>&1 &
  ush=$!
  BOOT_USH=$ush
  for _ in $(seq 50); do
    sd_pid=$(pgrep -P "$ush" 2>/dev/null | head -n 1 || true)
    [ -n "$sd_pid" ] && BOOT_SD=$sd_pid
    [ -n "$sd_pid" ] && [ "$(cat /proc/"$sd_pid"/comm 2>/dev/null)" = systemd ] && break
    sleep 0.2
  done
  [ -n "$sd_pid" ] || { cat "$vm/boot.log"; boot_stop; boot_skip "systemd did not start in the namespaces"; return; }
  # Every command in the scratch system runs under what is left of the boot test's budget.
  inside() {
    local left=$((boot_deadline - SECONDS))
    [ "$left" -gt 0 ] || fail "the boot test took longer than ${FELHOM_BOOT_TEST_TIMEOUT:-900}s (FELHOM_BOOT_TEST_TIMEOUT)"
    nsenter -t "$sd_pid" -m -u -i -n -p -C -r -w /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      timeout -k 10 "$left" "$@"
  }
  local state
  # Until PID 1 has created its private socket, systemctl cannot even connect; poll.
  for _ in $(seq 120); do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.5
  done
  case "$state" in running|degraded) ;; *) boot_skip "systemd in the scratch system is '$state'"; return ;; esac
  note "booted: $(inside systemctl --version | head -n 1)"

  inside timeout 300 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends /root/felhom-agent.deb > "$vm/apt.log" 2>&1 ||
    { cat "$vm/apt.log"; fail "apt install of the package failed on a real systemd"; }
  inside id felhom-agent >/dev/null || fail "user felhom-agent missing after install"
  [ "$(inside stat -c '%a %U:%G' /run/felhom)" = "750 root:felhom-agent" ] || fail "/run/felhom: $(inside stat -c '%a %U:%G' /run/felhom)"
  [ "$(inside stat -c '%a %U:%G %F' /run/felhom/helper.sock)" = "660 root:felhom-agent socket" ] ||
    fail "helper.sock: $(inside stat -c '%a %U:%G %F' /run/felhom/helper.sock)"
  [ "$(inside systemctl is-enabled felhom-helper.socket felhom-agent.service | tr '\n' ' ')" = "enabled enabled " ] ||
    fail "units not enabled after install"
  inside systemctl is-active --quiet felhom-helper.socket || fail "felhom-helper.socket not listening after install"
  ! inside systemctl is-active --quiet felhom-agent.service || fail "the agent was started without a config"
  note "ok: apt install: user, /run/felhom 0750 and helper.sock 0660 root:felhom-agent, units enabled, socket listening, agent not started"
  # The man pages are where man finds them (man-db is in the scratch system).
  local page
  for page in "felhom-agent" "8 felhom-helper" "felhom-agent-usb-mount"; do
    # shellcheck disable=SC2086
    inside man -w $page >/dev/null 2>&1 || fail "man -w $page finds no page after install"
  done
  note "ok: man -w felhom-agent -> $(inside man -w felhom-agent), man -w 8 felhom-helper -> $(inside man -w 8 felhom-helper)"

  local run=/usr/libexec/felhom/felhom-sandbox-run pid1_ns helper_ns agent_ns
  # felhom-sandbox-run reads the unit through `systemctl cat`, so the operator's drop-ins count.
  inside mkdir -p /etc/systemd/system/felhom-agent.service.d
  inside sh -c 'printf "[Service]\nEnvironment=FELHOM_CI_DROPIN=1\n" > /etc/systemd/system/felhom-agent.service.d/ci.conf'
  inside systemctl daemon-reload
  inside "$run" --print agent /bin/true | grep -q 'Environment=FELHOM_CI_DROPIN=1' || fail "felhom-sandbox-run ignores drop-ins"
  inside rm -r /etc/systemd/system/felhom-agent.service.d
  inside systemctl daemon-reload
  note "ok: felhom-sandbox-run includes drop-ins (systemctl cat)"
  pid1_ns=$(inside readlink /proc/1/ns/mnt)
  helper_ns=$(inside "$run" helper /usr/bin/readlink /proc/self/ns/mnt)
  [ -n "$pid1_ns" ] && [ -n "$helper_ns" ] || fail "could not read the mount namespaces"
  [ "$helper_ns" = "$pid1_ns" ] || fail "the helper's sandbox has its own mount namespace ($helper_ns, PID 1: $pid1_ns)"
  inside mkdir -p /mnt/felhom-ci
  inside "$run" helper /usr/bin/mount -t tmpfs -o size=1m felhom-ci /mnt/felhom-ci || fail "mount inside the helper's sandbox failed"
  inside findmnt -n /mnt/felhom-ci >/dev/null || fail "a mount made in the helper's sandbox is not visible to PID 1"
  inside umount /mnt/felhom-ci
  inside "$run" helper /usr/bin/systemctl daemon-reload || fail "systemctl from the helper's sandbox failed"
  ! inside "$run" helper /usr/bin/unshare --net true 2>/dev/null || fail "the helper's sandbox allows a network namespace"
  inside "$run" helper /usr/bin/unshare --user --mount --map-root-user true || fail "the helper's sandbox refuses user+mount namespaces (lxc-usernsexec)"
  note "ok: helper sandbox shares PID 1's mount namespace, its mounts are visible, systemctl works, only user+mnt namespaces"
  # The same for the real helper as systemd starts it for the socket (it idles for
  # idle_timeout_secs, 60 s, before it exits): its mount namespace, read while it runs.
  local hpid real_ns
  inside systemctl start felhom-helper.service || { inside journalctl -u felhom-helper.service --no-pager | tail -n 20; fail "felhom-helper.service did not start"; }
  hpid=$(inside systemctl show -p MainPID --value felhom-helper.service)
  [ -n "$hpid" ] && [ "$hpid" != 0 ] || { inside journalctl -u felhom-helper.service --no-pager | tail -n 20; fail "felhom-helper.service is not running (MainPID '$hpid')"; }
  real_ns=$(inside readlink "/proc/$hpid/ns/mnt")
  inside systemctl is-active --quiet felhom-helper.service || fail "felhom-helper.service exited while its namespace was read"
  [ "$real_ns" = "$pid1_ns" ] || fail "the socket-activated helper (PID $hpid) has its own mount namespace ($real_ns, PID 1: $pid1_ns)"
  note "ok: the running felhom-helper.service (PID $hpid in the scratch system) shares PID 1's mount namespace"

  # The audit under a flood, with the real journald: every cheap call, 1 ms deadlines and new
  # connections for 10 s from root, the agent's uid and a uid the helper refuses (nobody with
  # the agent's group, so the socket's mode lets it connect), and 20 refused usb_unmount calls
  # in between, each of which must have its own record.
  if [ -x "$broot/root/felhom-flood" ]; then
    local fuid fgid since fout n uniq seqgap supp
    fuid=$(inside id -u felhom-agent); fgid=$(inside id -g felhom-agent)
    since=$(inside date '+%Y-%m-%d %H:%M:%S')
    sleep 1
    fout=$(inside /root/felhom-flood /run/felhom/helper.sock --seconds 10 --mutating 20 --tag ci-flood \
             --as 0:0 --as "$fuid:$fgid" --as "65534:$fgid" --as "$fuid:$fgid" 2>&1) ||
      { printf '%s\n' "$fout"; fail "the flood client failed (a mutating call was not answered)"; }
    note "flood: $(printf '%s' "$fout" | tr '\n' ';')"
    # journald stores datagrams asynchronously: give it a few seconds.
    for _ in $(seq 40); do
      n=$(inside journalctl -t felhom-helper --since "$since" --no-pager -o verbose FELHOM_OP=usb_unmount \
            | grep -o 'FELHOM_REQUEST=MountName("ci-flood-[0-9]*")' | wc -l)
      [ "$n" -ge 20 ] && break
      sleep 0.5
    done
    uniq=$(inside journalctl -t felhom-helper --since "$since" --no-pager -o verbose FELHOM_OP=usb_unmount \
            | grep -o 'FELHOM_REQUEST=MountName("ci-flood-[0-9]*")' | sort -u | wc -l)
    [ "$n" = 20 ] && [ "$uniq" = 20 ] ||
      { inside journalctl -t felhom-helper --since "$since" --no-pager | tail -n 40; fail "the journal has $n usb_unmount records of the flood ($uniq distinct), not 20"; }
    # No record lost: FELHOM_SEQ grows by one per record within each helper process.
    seqgap=$(inside journalctl -t felhom-helper --since "$since" --no-pager -o verbose --output-fields=FELHOM_SEQ,_PID \
      | awk '/^ *_PID=/ {sub(/^ *_PID=/, ""); pid=$0} /^ *FELHOM_SEQ=/ {sub(/^ *FELHOM_SEQ=/, ""); s[pid]=s[pid] " " $0}
             END {for (p in s) {k=split(s[p], v, " "); lo=v[1]; hi=v[1]; for (i=1; i<=k; i++) {if (v[i]+0<lo+0) lo=v[i]; if (v[i]+0>hi+0) hi=v[i]}
                  if (hi-lo+1 != k) print "pid " p ": " k " records, seq " lo ".." hi}}')
    [ -z "$seqgap" ] || fail "gaps in the helper's audit sequence after the flood: $seqgap"
    # Aggregated: tens of thousands of cheap calls and refused connections leave a few dozen
    # entries (one per kind, uid and 10 s window, and the counts), not one each.
    local cheap entries
    cheap=$(printf '%s\n' "$fout" | grep -o 'cheap [0-9]*' | awk '{n += $2} END {print n + 0}')
    entries=$(inside journalctl -t felhom-helper --since "$since" --no-pager -o cat | wc -l)
    [ "$cheap" -ge 2000 ] || fail "the flood made only $cheap cheap calls"
    [ "$entries" -lt 500 ] ||
      { inside journalctl -t felhom-helper --since "$since" --no-pager | tail -n 40; fail "$cheap cheap calls left $entries helper entries: not aggregated"; }
    # journald reports suppression when the next message comes after its interval (30 s):
    # wait for that, make the helper log again, then look.
    sleep 32
    inside /root/felhom-flood /run/felhom/helper.sock --seconds 1 --mutating 1 --tag ci-after >/dev/null 2>&1 || true
    sleep 2
    supp=$(inside journalctl --since "$since" --no-pager -o cat | grep -E 'Suppressed [0-9]+ messages from felhom-helper' || true)
    [ -z "$supp" ] || fail "journald suppressed helper messages during the flood: $supp"
    note "ok: a 10 s flood from 3 uids ($cheap cheap calls): $entries helper entries, all 20 usb_unmount records in the journal, no gap in FELHOM_SEQ, no suppression by journald"
  else
    echo "  SKIP (audit flood): felhom-flood was not built"
  fi

  if [ -x "$broot/root/felhom-pve-sim" ]; then
    inside sh -c 'nohup /root/felhom-pve-sim --port 8006 --write-config /root/sim >/root/sim.out 2>&1 &'
    for _ in $(seq 50); do [ -f "$broot/root/sim/agent.json" ] && break; sleep 0.2; done
    [ -f "$broot/root/sim/agent.json" ] || { cat "$broot/root/sim.out"; fail "simulator did not start"; }
    # The install guide's steps 3 and 5, with the simulator's token and fingerprint.
    inside bash -c 'set -e
      fp=$(sed -n "s/.*\"tls_fingerprint\": \"\(.*\)\".*/\1/p" /root/sim/agent.json)
      (umask 077; cat /root/sim/pve-token > /etc/felhom/pve-token)
      chown root:root /etc/felhom/pve-token && chmod 0600 /etc/felhom/pve-token
      printf "{\n  \"api_url\": \"https://127.0.0.1:8006\",\n  \"node\": \"pve\",\n  \"token_id\": \"felhom@pve!agent\",\n  \"tls_fingerprint\": \"%s\"\n}\n" "$fp" > /etc/felhom/agent.json
      chown root:felhom-agent /etc/felhom/agent.json && chmod 0640 /etc/felhom/agent.json'
    agent_ns=$(inside "$run" agent /usr/bin/readlink /proc/self/ns/mnt)
    [ -n "$agent_ns" ] && [ "$agent_ns" != "$pid1_ns" ] || fail "the agent's sandbox has no private mount namespace ('$agent_ns')"
    note "ok: the agent's sandbox has its own mount namespace"
    # Type=notify: start returns once the agent has sent READY=1 from inside its sandbox.
    inside timeout 120 systemctl enable --now felhom-agent.service ||
      { inside journalctl -u felhom-agent.service --no-pager | tail -n 20; fail "felhom-agent did not become ready"; }
    inside systemctl is-active --quiet felhom-agent.service || fail "felhom-agent is not active"
    # READY=1 comes before the first cycle, which writes health.json: wait for it.
    for _ in $(seq 150); do inside test -e /var/lib/felhom-agent/health.json && break; sleep 0.2; done
    [ "$(inside stat -c %U /var/lib/felhom-agent/health.json)" = felhom-agent ] ||
      { inside journalctl -u felhom-agent.service --no-pager | tail -n 20; fail "health.json was not written by the agent"; }
    note "ok: agent ready under its sandbox (LoadCredential, PrivateUsers, IPAddressAllow=localhost): $(inside systemctl show -p StatusText --value felhom-agent.service)"
    # The install guide's check: selftest as the service runs. The helper line proves the
    # whole chain: agent sandbox -> socket (0660, group) -> socket-activated helper in its
    # sandbox -> SO_PEERCRED check of the agent's uid -> reply.
    local sel
    sel=$(inside "$run" agent /usr/bin/felhom-agent --config /etc/felhom/agent.json selftest 2>&1 || true)
    printf '%s\n' "$sel" | grep -Eq '^pve +ok' || { printf '%s\n' "$sel"; fail "selftest: Proxmox (simulator) not reachable from the agent's sandbox"; }
    printf '%s\n' "$sel" | grep -Eq '^helper +ok' || { printf '%s\n' "$sel"; fail "selftest: the helper was not reachable through felhom-helper.socket"; }
    note "ok: selftest in the agent's sandbox: $(printf '%s\n' "$sel" | grep -E '^helper ' | tr -s ' ')"
    # The helper's audit records of that selftest are journal entries with their own fields
    # and the fixed MESSAGE_ID (helper/src/logging.rs), queryable per operation and uid.
    local audit_id=848502c4b01247f996a33908f7914733 agent_uid aud
    agent_uid=$(inside id -u felhom-agent)
    # journald stores datagrams asynchronously: give it a few seconds.
    for _ in $(seq 20); do
      aud=$(inside journalctl -u felhom-helper.service --no-pager -o verbose \
              "MESSAGE_ID=$audit_id" FELHOM_OP=smart_scan "FELHOM_PEER_UID=$agent_uid" 2>&1 || true)
      printf '%s\n' "$aud" | grep -q '^ *FELHOM_OP=smart_scan' && break
      sleep 0.5
    done
    for field in "MESSAGE=" "FELHOM_OP=smart_scan" "FELHOM_PEER_UID=$agent_uid" \
                 "FELHOM_PEER_PID=[0-9]" "FELHOM_REQUEST=" "FELHOM_OUTCOME=." "FELHOM_DURATION_MS=[0-9]" \
                 "FELHOM_TARGET=audit" "PRIORITY=[0-7]" "SYSLOG_IDENTIFIER=felhom-helper" "_SYSTEMD_UNIT=felhom-helper.service"; do
      printf '%s\n' "$aud" | grep -q "^ *$field" ||
        { printf '%s\n' "$aud"; inside journalctl -u felhom-helper.service --no-pager | tail -n 20; fail "no audit journal entry with $field"; }
    done
    note "ok: audit entries in the journal: journalctl -u felhom-helper.service MESSAGE_ID=$audit_id FELHOM_OP=smart_scan FELHOM_PEER_UID=$agent_uid"
    # The agent's own journal lines: fields, no escape sequences.
    local alog
    alog=$(inside journalctl -u felhom-agent.service --no-pager --all -o cat)
    [ -n "$alog" ] || fail "the agent logged nothing to the journal"
    ! printf '%s\n' "$alog" | grep -q $'\x1b' || { printf '%s\n' "$alog" | cat -v | head -n 20; fail "an agent journal line contains an escape character"; }
    inside journalctl -u felhom-agent.service --no-pager -o verbose SYSLOG_IDENTIFIER=felhom-agent | grep -q '^ *FELHOM_CYCLE=1$' ||
      fail "the agent's cycle log is not a journal entry with FELHOM_CYCLE"
    note "ok: agent journal: $(printf '%s\n' "$alog" | wc -l) lines, no escape character, fields such as FELHOM_CYCLE"
    # The metrics file of the service, as node_exporter would read it (another user).
    inside test -s /var/lib/felhom-agent/felhom-agent.prom || fail "the agent wrote no metrics file"
    [ "$(inside stat -c '%a %U' /var/lib/felhom-agent/felhom-agent.prom)" = "644 felhom-agent" ] ||
      fail "metrics file: $(inside stat -c '%a %U' /var/lib/felhom-agent/felhom-agent.prom)"
    inside setpriv --reuid=65534 --regid=65534 --clear-groups cat /var/lib/felhom-agent/felhom-agent.prom | grep -q '^felhom_up{node="pve"} [01]$' ||
      fail "the metrics file is not readable by another user, or has no felhom_up"
    note "ok: /var/lib/felhom-agent/felhom-agent.prom (0644) readable by another user (nobody)"
    local before after
    before=$(inside systemctl show -p MainPID --value felhom-agent.service)
    inside timeout 300 dpkg -i /root/felhom-agent.deb > "$vm/upgrade.log" 2>&1 || { cat "$vm/upgrade.log"; fail "reinstall/upgrade failed"; }
    after=$(inside systemctl show -p MainPID --value felhom-agent.service)
    [ "$before" != "$after" ] && inside systemctl is-active --quiet felhom-agent.service || fail "upgrade did not restart the agent"
    note "ok: upgrade restarts the agent"
  else
    echo "  SKIP (agent run): felhom-pve-sim was not built"
  fi

  inside timeout 300 apt-get purge -y -qq felhom-agent > "$vm/purge.log" 2>&1 || { cat "$vm/purge.log"; fail "purge failed"; }
  ! inside test -e /etc/felhom || fail "purge left /etc/felhom"
  ! inside test -e /var/lib/felhom-agent || fail "purge left /var/lib/felhom-agent"
  inside id felhom-agent >/dev/null || fail "purge removed the system user (Debian keeps it)"
  note "ok: purge removes /etc/felhom and the state, keeps the system user"
  boot_stop
  note "ok: scratch system stopped, its cgroups removed"
}

echo "--- boot test: real systemd in a scratch Debian, apt install, sandboxes, agent, upgrade, purge"
if [ "${FELHOM_CI_BOOT_TEST:-1}" = 0 ]; then
  echo "SKIP (boot test): FELHOM_CI_BOOT_TEST=0"
elif ! is_root; then
  echo "SKIP (boot test): needs root (debootstrap, namespaces)"
else
  boot_test || [ $? = 2 ]
fi

echo "package checks passed: $deb"
