#!/usr/bin/env bash
# Figure 1.1 reproduced: goodput against offered load, past saturation,
# with load shedding and limits off (the cliff) and on (flat).
#
# For each setting the local cluster (3 shards x 3 replicas, 2 business,
# 2 gateways) is started fresh on loopback, then `loadgen deposit` sweeps
# an open-loop offered load from FROM to TO in STEPS steps, every request
# with a 1 s deadline; goodput counts the deposits answered OK within it.
#
#   off: --max-concurrent-calls 0 everywhere, huge balancer and write
#        queues, no tenant limit: every call is accepted and waits.
#   on:  --max-concurrent-calls ${ON_LIMIT} per server, the default bounded
#        queues: the excess is refused at once (RESOURCE_EXHAUSTED /
#        UNAVAILABLE) and the admitted calls finish in time.
#
#   scripts/bench/figure-1-1.sh [--sweep 900:13500:8] [--duration 10s] [--out docs/bench]
# Writes OUT/figure-1-1.jsonl, OUT/figure-1-1.csv and OUT/figure-1-1.png.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

SWEEP=900:13500:8 DURATION=10s OUT="$ROOT/docs/bench" ON_LIMIT=${ON_LIMIT:-256}
while (($#)); do
  case $1 in
    --sweep) SWEEP=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
mkdir -p "$OUT"
rm -f "$OUT/figure-1-1.jsonl" "$OUT/figure-1-1.csv"
export ANATOMY_DIR="$ROOT/.anatomy-figure"
OFFSET=2000
GATEWAYS="127.0.0.1:$((50051 + OFFSET)),127.0.0.1:$((50052 + OFFSET))"
trap '"$ROOT/scripts/down.sh" --wipe >/dev/null 2>&1 || true' EXIT

# sweep LABEL: one fresh cluster with the current environment, one sweep.
sweep() {
  "$ROOT/scripts/down.sh" --wipe >/dev/null 2>&1 || true
  "$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" >/dev/null
  say "==> $1: sweep $SWEEP, $DURATION each"
  "$BIN_DIR/loadgen" deposit --gateway "$GATEWAYS" --accounts 1000 --sweep "$SWEEP" \
    --duration "$DURATION" --deadline 1s --label "$1" --quiet \
    --json "$OUT/figure-1-1.jsonl" --summary-csv "$OUT/figure-1-1.csv"
}

(
  export ANATOMY_MAX_CONCURRENT_CALLS=0 ANATOMY_TENANT_RPS=0
  export ANATOMY_BALANCER_QUEUE=1000000 ANATOMY_WRITE_QUEUE=1000000
  sweep "limits off"
)
(
  export ANATOMY_MAX_CONCURRENT_CALLS=$ON_LIMIT ANATOMY_TENANT_RPS=0
  sweep "limits on"
)
"$BIN_DIR/loadgen" plot --input "$OUT/figure-1-1.jsonl" --kind goodput \
  --title "Goodput vs offered load (deadline 1 s): limits off vs on" --out "$OUT/figure-1-1.png"
say "wrote $OUT/figure-1-1.{jsonl,csv,png}"
