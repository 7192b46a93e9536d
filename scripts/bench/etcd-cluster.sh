#!/usr/bin/env bash
# A 3-member etcd cluster on loopback, for the storage benchmark.
#   scripts/bench/etcd-cluster.sh start   # installs etcd-server if missing, starts, waits until healthy
#   scripts/bench/etcd-cluster.sh stop    # stops the members and deletes their data
# Client endpoints: 127.0.0.1:2379, 127.0.0.1:22379, 127.0.0.1:32379.
# Data lives in .anatomy-etcd/ on the same disk as the local cluster's, and
# etcd fsyncs every commit, as Anatomy storage does.
# The backend quota is 8 GiB (etcd's documented maximum), not the default
# 2 GiB: 10⁷ keys of 256 bytes (--large) do not fit in 2 GiB.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DIR="$ROOT/.anatomy-etcd"
MEMBERS=(1 2 3)
client_port() { echo $(($1 == 1 ? 2379 : $1 * 10000 + 2379)); }
peer_port() { echo $(($1 == 1 ? 2380 : $1 * 10000 + 2380)); }
ENDPOINTS="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"

install() {
  command -v etcd >/dev/null && command -v etcdctl >/dev/null && return
  # etcdctl (the health check below) is in its own package.
  say "installing etcd-server and etcd-client (Debian packages)"
  if ! apt-get install -y -qq etcd-server etcd-client >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null
  fi
}

start() {
  install
  mkdir -p "$DIR"
  local cluster=""
  for m in "${MEMBERS[@]}"; do cluster+="m$m=http://127.0.0.1:$(peer_port "$m"),"; done
  for m in "${MEMBERS[@]}"; do
    if [[ -f $DIR/m$m.pid ]] && pid_alive "$(<"$DIR/m$m.pid")"; then continue; fi
    nohup etcd --name "m$m" --data-dir "$DIR/m$m" \
      --listen-client-urls "http://127.0.0.1:$(client_port "$m")" \
      --advertise-client-urls "http://127.0.0.1:$(client_port "$m")" \
      --listen-peer-urls "http://127.0.0.1:$(peer_port "$m")" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$m")" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new \
      --initial-cluster-token anatomy-bench --log-level warn \
      --quota-backend-bytes $((8 << 30)) \
      >"$DIR/m$m.log" 2>&1 </dev/null &
    echo $! >"$DIR/m$m.pid"
  done
  local limit=$((SECONDS + 60))
  until ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1; do
    ((SECONDS < limit)) || { tail "$DIR"/m*.log >&2; die "etcd did not become healthy"; }
    sleep 0.5
  done
  say "etcd $(etcd --version | head -1 | awk '{print $3}') is up: $ENDPOINTS"
}

stop() {
  for m in "${MEMBERS[@]}"; do
    if [[ -f $DIR/m$m.pid ]]; then
      kill "$(<"$DIR/m$m.pid")" 2>/dev/null || true
      while pid_alive "$(<"$DIR/m$m.pid")"; do sleep 0.1; done
    fi
  done
  rm -rf "$DIR"
  say "etcd stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  endpoints) echo "$ENDPOINTS" ;;
  *) die "usage: $0 start|stop|endpoints" ;;
esac
