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

# --- Docker Compose ---------------------------------------------------------
COMPOSE_FILE="$ROOT/deploy/compose/compose.yaml"
COMPOSE_PROJECT="${ANATOMY_COMPOSE_PROJECT:-anatomy}"

# compose ARGS...: Compose v2 (`docker compose`) if present, else v1.
compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE" "$@"
  elif command -v docker-compose >/dev/null; then
    docker-compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE" "$@"
  else
    die "neither 'docker compose' nor 'docker-compose' is installed"
  fi
}

# compose_wait_healthy SECONDS: until every container of the project is
# running and healthy; prints the stragglers and fails after SECONDS.
compose_wait_healthy() {
  local limit=$((SECONDS + $1)) ids id status bad
  while ((SECONDS < limit)); do
    mapfile -t ids < <(compose ps -q)
    bad=()
    for id in "${ids[@]}"; do
      status=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
      [[ $status == *" running healthy" ]] || bad+=("$status")
    done
    if ((${#ids[@]} > 0 && ${#bad[@]} == 0)); then return 0; fi
    sleep 1
  done
  printf '  not healthy: %s\n' "${bad[@]}" >&2
  return 1
}

# container_ip CONTAINER NETWORK: the container's address on a project network.
container_ip() {
  docker inspect -f "{{(index .NetworkSettings.Networks \"${COMPOSE_PROJECT}_$2\").IPAddress}}" "$1"
}
