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
