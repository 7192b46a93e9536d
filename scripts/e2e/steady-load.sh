#!/usr/bin/env bash
# End-to-end: steady load on a healthy cluster loses nothing, while every
# aged connection is renewed under it.
#
# A fresh local cluster (3 shards x 3 replicas, 2 business, 1 gateway)
# with --max-connection-age 20s on the gateway and business (each process
# draws its own age within ±10 %), and `loadgen deposit --concurrency 64`
# for --duration (default 180 s, about nine ages of every connection):
#   - not one deposit fails;
#   - the load generator's connection to the gateway, and the gateway's to
#     business, were renewed during the run (their client ports at the end
#     are not those of the start): the aging happened and cost nothing;
#   - storage connections were not aged (Raft peers and storage clients
#     keep theirs).
#
#   scripts/e2e/steady-load.sh [--duration 180]   (env STEADY_DURATION)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${STEADY_DURATION:-180}
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

export ANATOMY_DIR="$ROOT/.anatomy-e2e-steady"
export ANATOMY_MAX_CONNECTION_AGE=20s
OFFSET=3500
LOG="$ROOT/.e2e-steady.log"
OUT="$ANATOMY_DIR/out"
GW_PORT=$((50051 + OFFSET)) BIZ_PORT=$((50061 + OFFSET)) STORAGE_PORT=$((50071 + OFFSET))
# On a failure the processes' logs are kept in .e2e-steady-logs/ (the
# gateway logs when a breaker opens, and why).
cleanup() {
  if ((FAILURES)) && [[ -d $ANATOMY_DIR/logs ]]; then
    rm -rf "$ROOT/.e2e-steady-logs" && cp -r "$ANATOMY_DIR/logs" "$ROOT/.e2e-steady-logs"
  fi
  "$ROOT/scripts/down.sh" --wipe >/dev/null || true
}
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --shards 3 --replicas 3 \
  --businesses 2 --gateways 1 >"$LOG" 2>&1 || { cat "$LOG"; die "up.sh failed"; }
mkdir -p "$OUT"

# client_ports PORT: the established connections to PORT on loopback, each
# as its client port and the kernel's socket cookie (unique for the kernel's
# life: a port number alone can be reused by the next connection), sorted,
# one line.
client_ports() {
  ss -Htne state established "( dport = :$1 )" |
    awk '{split($3, a, ":"); c = ""; for (i = 1; i <= NF; i++) if ($i ~ /^sk:/) c = $i; print a[2] "/" c}' |
    sort | tr '\n' ' '
}
# The first storage replica's port: its clients and peers (ports of a
# shard's replicas are consecutive from STORAGE_PORT).
storage_ports() { client_ports "$STORAGE_PORT"; }

step "deposits at c=64 for ${DURATION}s, connections aged every ~20 s"
"$BIN_DIR/loadgen" deposit --gateway "127.0.0.1:$GW_PORT" --accounts 200 --concurrency 64 \
  --duration "${DURATION}s" --timeout 10s --quiet --json "$OUT/deposits.jsonl" >"$OUT/deposits.out" 2>&1 &
LG=$!
sleep 3
gw_start=$(client_ports "$GW_PORT") biz_start=$(client_ports "$BIZ_PORT") st_start=$(storage_ports)
printf '  at the start: loadgen->gateway [%s], gateway->business-1 [%s]\n' "$gw_start" "$biz_start"
# Near the end, while the load still runs (the loadgen stops by itself).
sleep $((DURATION > 10 ? DURATION - 6 : 1))
gw_end=$(client_ports "$GW_PORT") biz_end=$(client_ports "$BIZ_PORT") st_end=$(storage_ports)
printf '  near the end: loadgen->gateway [%s], gateway->business-1 [%s]\n' "$gw_end" "$biz_end"
rc=0
wait "$LG" || rc=$?

row=$(tail -n 1 "$OUT/deposits.jsonl" 2>/dev/null || echo '{}')
ok=$(json_field "$row" ok) failed=$(json_field "$row" failed)
expect_eq 0 "$rc" "loadgen's exit status"
expect_eq 0 "${failed:-missing}" "deposits that failed (of ${ok:-?})"
((${ok:-0} > 0)) || fail "no deposit succeeded"
((${failed:-1} == 0)) || sed 's/^/    /' "$OUT/deposits.out" | tail -15

step "connections were aged under the load, storage's were not"
if [[ -n $gw_start && -n $gw_end && $gw_start != "$gw_end" ]]; then pass "the loadgen's connection to the gateway was renewed"
else fail "the loadgen->gateway connection was not renewed: [$gw_start] -> [$gw_end]"; fi
if [[ -n $biz_start && -n $biz_end && $biz_start != "$biz_end" ]]; then pass "the gateway's connection to business-1 was renewed"
else fail "the gateway->business-1 connection was not renewed: [$biz_start] -> [$biz_end]"; fi
if [[ -n $st_start && $st_start == "$st_end" ]]; then pass "connections to storage-s0-r1 were kept ([$st_start])"
else fail "connections to storage-s0-r1 changed: [$st_start] -> [$st_end]"; fi

finish
