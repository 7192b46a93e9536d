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

# build_binaries: the one build every script shares — every binary of the
# workspace in the release profile. The workspace-hack crate (cargo hakari)
# gives every dependency one feature set, so this, scripts/test.sh's
# `--all-targets` build and `cargo build -p <one crate>` reuse each other's
# artifacts instead of recompiling.
build_binaries() {
  (cd "$ROOT" && cargo build --release --workspace --bins "$@")
}
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

# The Compose deployment's certificates: anatomy-certs' directory (the CA,
# its key, every pair) and, mounted read-only into each container at /tls,
# one directory per identity with only its ca.pem and pair.
COMPOSE_CERTS="${ANATOMY_COMPOSE_CERTS:-$ROOT/.anatomy/compose/certs}"
export ANATOMY_COMPOSE_TLS="${ANATOMY_COMPOSE_TLS:-$ROOT/.anatomy/compose/tls}"
# The operator's grpcurl flags for the containers' internal ports (the
# certificates name localhost, not the containers' addresses).
COMPOSE_OPERATOR=(-cacert "$COMPOSE_CERTS/ca.pem" -cert "$COMPOSE_CERTS/operator.pem"
  -key "$COMPOSE_CERTS/operator.key" -servername localhost)

# compose_certs: makes the CA and the 3x3 cluster's pairs once, and
# (re)exports them for mounting (keys readable by the containers' user).
compose_certs() {
  [[ -x $BIN_DIR/anatomy-certs ]] || die "$BIN_DIR/anatomy-certs is missing: cargo build --release -p anatomy-certs"
  "$BIN_DIR/anatomy-certs" --dir "$COMPOSE_CERTS" init --shards 3 --replicas 3 >/dev/null
  "$BIN_DIR/anatomy-certs" --dir "$COMPOSE_CERTS" export --to "$ANATOMY_COMPOSE_TLS" --readable-keys >/dev/null
}

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

# compose_wait_healthy SECONDS: until every service container of the
# project is running and healthy; prints the stragglers and fails after
# SECONDS. One-off containers (`compose run`, such as the load generator
# running beside a rolling restart) have no health check and are skipped:
# Compose v1 lists them in `ps`.
compose_wait_healthy() {
  local limit=$((SECONDS + $1)) ids id status bad
  while ((SECONDS < limit)); do
    mapfile -t ids < <(compose ps -q)
    bad=()
    for id in "${ids[@]}"; do
      status=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.oneoff"}} {{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null) || continue
      [[ $status == True* ]] && continue
      status=${status#* }
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
