#!/usr/bin/env bash
# End-to-end, Jepsen-style: the bank invariant under faults.
#
# On a local cluster (3 shards x 3 replicas, 2 business, 2 gateways),
# `loadgen bank` funds accounts across every shard and runs concurrent
# random transfers through both gateways, while this script kill -9s and
# restarts storage replicas (leaders among them) and business replicas,
# several times. When the load ends and every transfer has settled, the
# loadgen checks through the public API: money conserved, no negative
# balance, nothing stuck PENDING, every COMPLETED transfer on both sides,
# every history replaying to its balance. Any violation fails this test
# and prints the evidence.
#
#   scripts/e2e/bank.sh [--duration 40] [--rounds 6]   (env BANK_DURATION, BANK_ROUNDS)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${BANK_DURATION:-40}
ROUNDS=${BANK_ROUNDS:-6}
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

export ANATOMY_DIR="$ROOT/.anatomy-e2e-bank"
OFFSET=4000
LOG="$ROOT/.e2e-bank.log"
cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --businesses 2 --gateways 2 >"$LOG" 2>&1 ||
  { cat "$LOG"; die "up.sh failed"; }
# shellcheck disable=SC1091
source "$ANATOMY_DIR/cluster.env"
GATEWAYS_LIST=$(printf '127.0.0.1:%s,' "${GATEWAY_PORTS[@]}")

step "transfers for ${DURATION}s through both gateways, with $ROUNDS rounds of faults"
"$BIN_DIR/loadgen" bank --gateway "${GATEWAYS_LIST%,}" --accounts 24 --concurrency 8 \
  --duration "${DURATION}s" --timeout 10s --settle 90s >"$ANATOMY_DIR/bank.out" 2>>"$LOG" &
BANK=$!

pid_of() { cat "$ANATOMY_DIR/run/$1.pid"; }

# Faults are paced in time within the load window; each round kills one
# process with -9, then up.sh restarts it and waits until it serves.
pace=$((DURATION / (ROUNDS + 1)))
for ((round = 1; round <= ROUNDS; round++)); do
  sleep "$pace"
  # Rounds cycle: a leader, a follower-or-leader replica, a business
  # replica; the shard moves on every cycle.
  cycle=$(((round - 1) / 3))
  case $((round % 3)) in
    1) shard=$((cycle % 3)) victim="storage-s$shard-r$(leader_of "$shard" || echo 1)" what="leader of shard $shard" ;;
    2) shard=$(((cycle + 1) % 3)) victim="storage-s$shard-r$(((cycle + round) % 3 + 1))" what="a replica of shard $shard" ;;
    0) victim="business-$((cycle % 2 + 1))" what="a business replica" ;;
  esac
  kill -9 "$(pid_of "$victim")" 2>/dev/null || true
  printf '  round %d: kill -9 %s (%s)\n' "$round" "$victim" "$what"
  "$ROOT/scripts/up.sh" --no-build >>"$LOG" 2>&1 || { tail -30 "$LOG"; die "up.sh could not restart $victim"; }
done

step "waiting for the load, the settling and the check"
if wait "$BANK"; then
  cat "$ANATOMY_DIR/bank.out"
  pass "the bank invariants hold after $ROUNDS rounds of faults"
else
  cat "$ANATOMY_DIR/bank.out"
  fail "the bank check failed (evidence above)"
fi
rm -f "$LOG"
finish
