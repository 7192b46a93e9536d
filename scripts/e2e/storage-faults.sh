#!/usr/bin/env bash
# End-to-end: storage faults on a real local cluster (3 shards x 3 replicas),
# with deposits flowing through the gateway the whole time.
#  1. kill -9 one shard's leader under load: no deposit fails, none is lost
#     or applied twice; the longest deposit shows the unavailability window.
#  2. freeze (SIGSTOP) another shard's leader under load, then thaw it: same.
#  3. kill -9 two replicas of one shard: its accounts fail fast with
#     UNAVAILABLE within the caller's deadline; other shards keep working;
#     up.sh heals it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-faults"
OFFSET=3000
GW="127.0.0.1:$((50051 + OFFSET))"
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
ACCOUNTS=30
RESULTS="$ANATOMY_DIR/loadgen.jsonl"
LOG="$ROOT/.e2e-faults.log"

cleanup() {
  for f in "$ANATOMY_DIR"/run/storage-*.pid; do [[ -e $f ]] && kill -CONT "$(<"$f")" 2>/dev/null; done
  "$ROOT/scripts/down.sh" --wipe >/dev/null || true
}
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --businesses 2 --gateways 1 >"$LOG" 2>&1 ||
  { cat "$LOG"; die "up.sh failed"; }

# The running replicas' pid of (shard, replica).
pid_of() { cat "$ANATOMY_DIR/run/storage-s$1-r$2.pid"; }

# shard_of ACCOUNT: the shard (of 3) that owns acme/ACCOUNT.
shard_of() {
  python3 -c 'import sys, zlib; s = zlib.crc32(("acme/" + sys.argv[1]).encode()) % 1024; print(0 if s < 341 else 1 if s < 682 else 2)' "$1"
}

# deposits_under_load SECONDS: runs deposits through the gateway in the background.
deposits_under_load() {
  "$BIN_DIR/loadgen" deposit --gateway "$GW" --accounts "$ACCOUNTS" --concurrency 4 \
    --duration "$1s" --timeout 10s --json "$RESULTS" >>"$LOG" 2>&1 &
  LOADGEN_PID=$!
}

balance_of() {
  json_field "$(grpcurl -plaintext "${ACME[@]}" -d "{\"account_id\":\"$1\"}" "$GW" "$L/GetAccount" 2>/dev/null)" balance
}

# deposits_under_load SECONDS, then wait until deposits land (bounded).
start_load() {
  local before limit=$((SECONDS + 20))
  before=$(balance_of loadgen-0)
  deposits_under_load "$1"
  until [[ $(balance_of loadgen-0) =~ ^[0-9]+$ && $(balance_of loadgen-0) -gt ${before:-0} ]]; do
    ((SECONDS < limit)) || die "the load did not start"
    sleep 0.2
  done
}

# check_run WHAT: the last loadgen run failed nothing; prints its window.
check_run() {
  wait "$LOADGEN_PID" || fail "$1: loadgen exited with an error"
  local row
  row=$(tail -n 1 "$RESULTS")
  local ok failed max
  ok=$(json_field "$row" ok) failed=$(json_field "$row" failed) max=$(json_field "$row" max_ms)
  expect_eq 0 "$failed" "$1: deposits that failed (of $ok)"
  printf '  %s: %s deposits, longest %.0f ms (the unavailability window)\n' "$1" "$ok" "$max"
}

# total_deposited: every acknowledged deposit of the runs so far.
total_deposited() {
  python3 -c 'import json,sys; print(sum(json.loads(l)["ok"] for l in open(sys.argv[1])))' "$RESULTS"
}

# total_balance: the sum of every loadgen account's balance.
total_balance() {
  local i sum=0 out
  for ((i = 0; i < ACCOUNTS; i++)); do
    out=$(grpcurl -plaintext "${ACME[@]}" -d "{\"account_id\":\"loadgen-$i\"}" "$GW" "$L/GetAccount" 2>&1)
    sum=$((sum + $(json_field "$out" balance | sed 's/^$/0/')))
  done
  echo "$sum"
}

step "kill -9 the leader of shard 0 under load"
start_load 12
victim=$(leader_of 0) || die "shard 0 has no leader"
kill -9 "$(pid_of 0 "$victim")"
pass "killed storage-s0-r$victim (the leader)"
check_run "leader killed"
expect_eq "$(total_deposited)" "$(total_balance)" "sum of balances = acknowledged deposits (none lost, none twice)"
"$ROOT/scripts/up.sh" --no-build >>"$LOG" 2>&1 || die "up.sh did not heal the cluster"

step "freeze (SIGSTOP) the leader of shard 2 under load, then thaw it"
start_load 12
frozen=$(leader_of 2) || die "shard 2 has no leader"
kill -STOP "$(pid_of 2 "$frozen")"
pass "froze storage-s2-r$frozen (the leader)"
limit=$((SECONDS + 15))
until new=$(leader_of 2) && [[ $new != "$frozen" ]]; do
  ((SECONDS < limit)) || { fail "shard 2 elected no new leader while its leader was frozen"; break; }
  sleep 0.2
done
pass "shard 2 elected replica ${new:-?} while replica $frozen was frozen"
kill -CONT "$(pid_of 2 "$frozen")"
check_run "leader frozen"
expect_eq "$(total_deposited)" "$(total_balance)" "sum of balances = acknowledged deposits"

step "kill -9 two replicas of shard 1: only shard 1 fails, fast"
on1="" on0=""
for ((i = 0; i < ACCOUNTS; i++)); do
  case $(shard_of "loadgen-$i") in
    1) on1=${on1:-loadgen-$i} ;;
    0) on0=${on0:-loadgen-$i} ;;
  esac
done
kill -9 "$(pid_of 1 1)" "$(pid_of 1 2)"
started=$SECONDS
call out -max-time 3 "${ACME[@]}" -d "{\"request_id\":\"x-$RANDOM\",\"account_id\":\"$on1\",\"amount\":\"1\"}" "$GW" "$L/Deposit"
elapsed=$((SECONDS - started))
expect_code Unavailable "$out" "deposit to $on1 (shard 1, no majority)"
if ((elapsed <= 3)); then pass "it failed within the 3 s deadline (${elapsed}s)"; else fail "it took ${elapsed}s"; fi
call out "${ACME[@]}" -d "{\"request_id\":\"y-$RANDOM\",\"account_id\":\"$on0\",\"amount\":\"1\"}" "$GW" "$L/Deposit"
if [[ -n $(json_field "$out" balance) ]]; then pass "a deposit to $on0 on shard 0 still works"; else fail "shard 0: $out"; fi
"$ROOT/scripts/up.sh" --no-build >>"$LOG" 2>&1 || die "up.sh did not heal shard 1"
call out "${ACME[@]}" -d "{\"request_id\":\"z-$RANDOM\",\"account_id\":\"$on1\",\"amount\":\"1\"}" "$GW" "$L/Deposit"
if [[ -n $(json_field "$out" balance) ]]; then pass "after up.sh, shard 1 serves again"; else fail "shard 1 after healing: $out"; fi

rm -f "$LOG"
finish
