#!/usr/bin/env bash
# Runs a command as root in a private mount namespace in which / is read-only, except what a
# build and its tests write: the repository, cargo's target directory, the temporary
# directory, and cargo's and rustup's homes. For mutation runs: a mutant that breaks a path
# check (e.g. the "mount_root is not /" guard) then gets EROFS instead of changing the host
# (see docs/testing.md, "Mutation testing"). /proc, /sys and /dev keep their own mounts; mounts a
# test makes stay inside the namespace.
# Not root, or no unshare(1): runs the command as it is (a user cannot chmod / anyway).
set -euo pipefail
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null 2>&1; then
  exec "$@"
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
writable=("$repo" "$target" "${TMPDIR:-/tmp}" "${CARGO_HOME:-$HOME/.cargo}"
  "${RUSTUP_HOME:-$HOME/.rustup}")
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --mount --propagation private bash -c '
set -euo pipefail
n=$1; shift
for d in "${@:1:$n}"; do
  if [ -d "$d" ]; then mount --bind "$d" "$d"; fi
done
shift "$n"
mount -o remount,bind,ro /
# The working directory was entered before the bind mounts: enter it again through them.
cd "$PWD"
exec "$@"' bash "${#writable[@]}" "${writable[@]}" "$@"
