#!/usr/bin/env bash
# End-to-end: a shard is added and slots move between running shards
# while the ledger serves.
#
# On a local cluster (3 shards x 3 replicas, 2 business, 2 gateways),
# `loadgen bank` runs random transfers through both gateways and
# `loadgen deposit` deposits, while a fourth shard is added
# (`scripts/up.sh --shards 4`: it starts owning nothing and joins by
# itself) and `scripts/reshard.sh --balance` spreads the slots over the
# four; then a block of slots moves around the shards again and again
# (0 -> 1 -> 2 -> 3 -> 0 ...), and a business replica and a storage leader
# are killed with -9 and restarted in between. When the load ends: the
# bank invariants hold (money conserved, nothing PENDING, every history
# replays to its balance), no deposit failed, every slot has exactly one
# owner and none is in a move; then `reshard.sh --balance` evens the
# shards out again (256 each).
#
#   scripts/e2e/reshard.sh [--duration 60]   (env RESHARD_DURATION)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${RESHARD_DURATION:-60}
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

export ANATOMY_DIR="$ROOT/.anatomy-e2e-reshard"
OFFSET=7500
LOG="$ROOT/.e2e-reshard.log"
OUT="$ANATOMY_DIR/out"
cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --businesses 2 --gateways 2 >"$LOG" 2>&1 ||
  { cat "$LOG"; die "up.sh failed"; }
# shellcheck disable=SC1091
source "$ANATOMY_DIR/cluster.env"
mkdir -p "$OUT"
GATEWAYS_LIST=$(printf '127.0.0.1:%s,' "${GATEWAY_PORTS[@]}")
reshard() { "$ROOT/scripts/reshard.sh" "$@" >>"$LOG" 2>&1; }
pid_of() { cat "$ANATOMY_DIR/run/$1.pid"; }
kill_and_restart() {
  kill -9 "$(pid_of "$1")" 2>/dev/null || true
  printf '  kill -9 %s\n' "$1"
  "$ROOT/scripts/up.sh" --no-build >>"$LOG" 2>&1 || { tail -30 "$LOG"; die "up.sh could not restart $1"; }
}

step "transfers and deposits for ${DURATION}s: a fourth shard joins, slots spread to it, then slots 0-31 move from shard to shard"
"$BIN_DIR/loadgen" bank --gateway "${GATEWAYS_LIST%,}" --accounts 24 --concurrency 8 \
  --duration "${DURATION}s" --timeout 10s --settle 90s >"$OUT/bank.out" 2>>"$LOG" &
BANK=$!
"$BIN_DIR/loadgen" deposit --gateway "127.0.0.1:${GATEWAY_PORTS[0]}" --accounts 20 --concurrency 4 \
  --duration "${DURATION}s" --timeout 10s --quiet --json "$OUT/deposits.jsonl" >>"$LOG" 2>&1 &
DEPOSITS=$!
sleep 2
"$ROOT/scripts/up.sh" --no-build --shards 4 >>"$LOG" 2>&1 || { tail -30 "$LOG"; die "up.sh --shards 4 failed"; }
pass "shard 3 started and joined the cluster (its replicas report SERVING once shard 0 lists it)"
if reshard --balance; then
  pass "reshard.sh --balance spread the slots over 4 shards under load"
else
  fail "reshard.sh --balance onto the new shard failed (see $LOG)"
fi
moves=0 round=0 until=$((SECONDS + DURATION - 4))
while ((SECONDS < until)); do
  round=$((round + 1))
  to=$((round % 4))
  if reshard --move 0-31 --to "$to" --per-step 8; then
    moves=$((moves + 1))
    printf '  round %d: slots 0-31 moved to shard %d\n' "$round" "$to"
  else
    fail "round $round: moving slots 0-31 to shard $to failed (see $LOG)"
    tail -5 "$LOG"
  fi
  case $round in
    2) kill_and_restart business-1 ;;
    4) kill_and_restart "storage-s$to-r$(leader_of "$to" || echo 1)" ;;
  esac
done
if ((moves >= 4)); then pass "$moves moves of 32 slots under load"; else fail "only $moves moves in ${DURATION}s"; fi

step "the load: bank invariants and deposits"
if wait "$BANK"; then
  pass "the bank invariants hold after $moves moves"
else
  fail "the bank check failed"
fi
tail -n 12 "$OUT/bank.out" | sed 's/^/    /'
wait "$DEPOSITS" || fail "loadgen deposit exited with an error"
row=$(tail -n 1 "$OUT/deposits.jsonl")
ok=$(json_field "$row" ok) failed=$(json_field "$row" failed)
expect_eq 0 "$failed" "deposits that failed (of $ok)"
((ok > 0)) || fail "no deposit succeeded"
grep '^failed:' "$LOG" | head -5 | sed 's/^/    loadgen: /' || true
# Each acknowledged deposit added 1 to one of loadgen-0..19 (a fresh
# cluster): their balances sum to the deposits acknowledged, no more (a
# deposit applied twice) and no less (one lost in a move).
sum=0 out=""
for ((a = 0; a < 20; a++)); do
  call out -H 'authorization: Bearer dev-key-acme' -d "{\"account_id\":\"loadgen-$a\"}" \
    "127.0.0.1:${GATEWAY_PORTS[0]}" anatomy.gateway.v1.Ledger/GetAccount
  balance=$(python3 -c 'import json, sys; print(int(json.loads(sys.argv[1]).get("balance", 0)))' "$out" 2>/dev/null) ||
    { fail "GetAccount loadgen-$a: $out"; balance=0; }
  sum=$((sum + balance))
done
expect_eq "$ok" "$sum" "the deposit accounts' balances, summed (= deposits acknowledged)"

step "every slot has one owner, none is moving; then --balance evens the shards"
counts() {
  operator -max-time 5 "127.0.0.1:$((50071 + OFFSET))" anatomy.storage.v1.Admin/ClusterStatus |
    python3 -c 'import json, sys
s = json.load(sys.stdin)
owned = [sum(r["end"] - r.get("start", 0) for r in sh.get("ownedSlots", [])) for sh in s["shards"]]
moving = sum(len(sh.get("moving", [])) for sh in s["shards"])
print(sum(owned), moving, " ".join(map(str, owned)))'
}
read -r total moving per_shard <<<"$(counts)"
expect_eq 1024 "$total" "slots owned in all"
expect_eq 0 "$moving" "slots in a move"
reshard --balance || fail "reshard.sh --balance failed"
read -r total moving per_shard <<<"$(counts)"
expect_eq "256 256 256 256" "$per_shard" "slots per shard after --balance"

finish
