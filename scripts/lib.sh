#!/usr/bin/env bash
# Shared helpers for the local-cluster scripts (sourced, not run).
# shellcheck disable=SC2034  # variables here are used by the scripts that source this

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where the local cluster keeps its state: data/, logs/, run/ (pid files).
ANATOMY_DIR="${ANATOMY_DIR:-$ROOT/.anatomy}"
case "$ANATOMY_DIR" in /*) ;; *) ANATOMY_DIR="$ROOT/$ANATOMY_DIR" ;; esac
RUN_DIR="$ANATOMY_DIR/run"
LOG_DIR="$ANATOMY_DIR/logs"
DATA_DIR="$ANATOMY_DIR/data"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# pid_alive PID: the process exists and is not a zombie. (A killed process
# can linger as a zombie for a while, and `kill -0` still succeeds on it.)
pid_alive() {
  local pid=$1 state
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# running NAME: the process NAME recorded in run/NAME.pid is alive, not a
# zombie, and still the program we started (pids get reused).
running() {
  local name=$1 pidfile="$RUN_DIR/$1.pid" pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  # Every process up.sh starts carries ANATOMY_PROCESS=<its name>.
  grep -qz "^ANATOMY_PROCESS=$name\$" "/proc/$pid/environ" 2>/dev/null
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
