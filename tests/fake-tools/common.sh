# Shared part of the fake tools (sourced). Sets $state and records the call.
here=$(cd "$(dirname "$0")" && pwd)
state="$here/../state"
record() {
  {
    printf '%s' "$1"
    shift
    for a in "$@"; do printf '\t%s' "$a"; done
    printf '\n'
  } >> "$state/calls"
}
maybe_hang() {
  if [ -e "$state/hang-$1" ]; then
    sleep 1000 &
    echo "$!" > "$state/hang-pids"
    echo "$$" >> "$state/hang-pids"
    wait
    exit 1
  fi
}
maybe_delay() {
  if [ -e "$state/delay-$1" ]; then
    sleep "$(cat "$state/delay-$1")"
  fi
}
maybe_detach() {
  # state/detach-<tool>: start a worker that leaves the process group and session (as
  # pct's fork_worker does) and record its pid; with content "hang", hang afterwards too.
  if [ -e "$state/detach-$1" ]; then
    setsid sh -c 'echo $$ >> "$1"; exec sleep 1000' sh "$state/hang-pids" </dev/null >/dev/null 2>&1 &
    while [ ! -s "$state/hang-pids" ]; do sleep 0.02; done
    if [ "$(cat "$state/detach-$1")" = hang ]; then
      echo "$$" >> "$state/hang-pids"
      sleep 1000
      exit 1
    fi
  fi
}
maybe_stderr() {
  # state/stderr-<tool>: printed to stderr (raw bytes, newlines and escapes included).
  if [ -e "$state/stderr-$1" ]; then cat "$state/stderr-$1" >&2; fi
}
devno_of() {
  # major:minor (decimal) of the block device a path leads to, as mountinfo shows it;
  # 0:99 when it is none (an anonymous device number, like btrfs shows).
  if hex=$(stat -L -c '%t %T' -- "$1" 2>/dev/null) && [ -b "$1" ]; then
    set -- $hex
    printf '%d:%d' "0x$1" "0x$2"
  else
    printf '0:99'
  fi
}
maybe_stuck() {
  # state/stuck-<tool>: line 1 a path, line 2 a marker file. A setsid worker stats the path
  # (on the test's FUSE mount that never answers, so the worker then outlives SIGKILL) and
  # appends its pid to hang-pids; the tool goes on once the marker says the lookup was taken.
  if [ -e "$state/stuck-$1" ]; then
    { read -r path; read -r marker; } < "$state/stuck-$1"
    setsid sh -c 'echo $$ >> "$1"; exec stat "$2"' sh "$state/hang-pids" "$path" </dev/null >/dev/null 2>&1 &
    while [ ! -e "$marker" ]; do sleep 0.02; done
  fi
}
