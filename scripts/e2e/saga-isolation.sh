#!/usr/bin/env bash
# shellcheck disable=SC2154  # $out is set by call() in lib.sh (printf -v)
# End-to-end: the saga's recovery can be neither poisoned nor stalled.
#  1. The poisoning sequence: fill the destination to i64::MAX (so every
#     credit to it is rejected), leave a transfer to it pending (a tiny
#     deadline), then try to fill the source to i64::MAX before recovery
#     refunds it. The ceiling rule refuses that deposit; recovery ends the
#     transfer FAILED with the source refunded, and another one COMPLETED.
#  2. A shard without a majority (two of its three replicas frozen with
#     SIGSTOP): a pending transfer to it waits, and has its failure
#     recorded; a transfer between the two other shards is recovered
#     meanwhile. Thawed, the first one ends too.
# --saga-step-pause 3s holds the caller's executor past its 1.5 s deadline,
# so each transfer is left PENDING after its debit, for recovery to finish.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-saga-isolation"
OFFSET=8500
GW="127.0.0.1:$((50051 + OFFSET))"
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
LOG="$ROOT/.e2e-saga-isolation.log"
MAX=9223372036854775807

thaw() {
  local f
  for f in "$ANATOMY_DIR"/run/storage-*.pid; do
    if [[ -e $f ]]; then kill -CONT "$(<"$f")" 2>/dev/null || true; fi
  done
}
cleanup() {
  thaw
  "$ROOT/scripts/down.sh" --wipe >/dev/null || true
}
trap cleanup EXIT
cleanup
# Each transfer's recovery gets 15 s (two 3 s pauses fit); a failed one is
# retried after at most 4 s.
ANATOMY_SAGA_STEP_PAUSE=3s ANATOMY_RECOVERY_AFTER=1s ANATOMY_RECOVERY_INTERVAL=1s \
  ANATOMY_REQUEST_TIMEOUT=15s ANATOMY_RECOVERY_MAX_BACKOFF=4s \
  "$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --businesses 1 --gateways 1 >"$LOG" 2>&1 ||
  { cat "$LOG"; die "up.sh failed"; }

shard_of() {
  python3 -c 'import sys, zlib; s = zlib.crc32(("acme/" + sys.argv[1]).encode()) % 1024; print(0 if s < 341 else 1 if s < 682 else 2)' "$1"
}
# on_shard PREFIX SHARD: the first account PREFIX<n> that SHARD owns.
on_shard() {
  local n
  for n in $(seq 1 500); do [[ $(shard_of "$1$n") == "$2" ]] && { echo "$1$n"; return; }; done
  die "no $1<n> on shard $2"
}
balance() { json_field "$(grpcurl -plaintext "${ACME[@]}" -d "{\"account_id\":\"$1\"}" "$GW" "$L/GetAccount" 2>&1)" balance; }
open_account() { call out "${ACME[@]}" -d "{\"request_id\":\"open-$1\",\"account_id\":\"$1\"}" "$GW" "$L/CreateAccount"; }
# deposit REQUEST ACCOUNT AMOUNT
deposit() { call out "${ACME[@]}" -d "{\"request_id\":\"$1\",\"account_id\":\"$2\",\"amount\":\"$3\"}" "$GW" "$L/Deposit"; }
transfer_field() {
  json_field "$(grpcurl -plaintext "${ACME[@]}" -d "{\"transfer_id\":\"$1\"}" "$GW" "$L/GetTransfer" 2>&1)" "$2"
}

# leave_pending REQUEST FROM TO AMOUNT: a transfer whose caller gives up
# after 1.5 s, while the executor pauses before its first step: debited,
# left PENDING. (Sent again with the same request id if the debit did not
# make it in time: retries are safe.)
leave_pending() {
  local status
  for _ in 1 2 3; do
    grpcurl -plaintext -max-time 1.5 "${ACME[@]}" \
      -d "{\"request_id\":\"$1\",\"from_account_id\":\"$2\",\"to_account_id\":\"$3\",\"amount\":\"$4\"}" \
      "$GW" "$L/Transfer" >/dev/null 2>&1 || true
    status=$(transfer_field "$2~$1" status)
    [[ $status == TRANSFER_STATUS_PENDING ]] && { pass "$2~$1 ($2 -> $3, $4) left PENDING"; return; }
  done
  die "$2~$1 is ${status:-not there}, not PENDING"
}

# wait_status ID STATUS SECONDS: until GetTransfer ID shows STATUS.
wait_status() {
  local limit=$((SECONDS + $3)) status
  while :; do
    status=$(transfer_field "$1" status)
    [[ $status == "$2" ]] && { pass "$1 is $2 after recovery"; return 0; }
    ((SECONDS < limit)) || { fail "$1 still ${status:-unreadable} after $3 s (want $2)"; return 1; }
    sleep 0.5
  done
}

step "1. the poisoning sequence"
SRC=$(on_shard mallory 0) DST=$(on_shard zed 1) HA=$(on_shard alice 2) HB=$(on_shard bob 0)
for a in "$SRC" "$DST" "$HA" "$HB"; do open_account "$a"; done
deposit fill "$DST" "$MAX"
expect_eq "$MAX" "$(json_field "$out" balance)" "$DST (shard 1) filled: every credit to it is rejected"
deposit fund "$SRC" 10
deposit fund "$HA" 100
leave_pending p1 "$SRC" "$DST" 10
leave_pending h1 "$HA" "$HB" 30
expect_eq "" "$(balance "$SRC")" "$SRC's balance (0: debited, the 10 in flight)"
deposit fill "$SRC" "$MAX"
expect_code FailedPrecondition "$out" "filling $SRC to i64::MAX while 10 are in flight"
grep -q "ceiling" <<<"$out" && pass "the refusal explains: $(grep -o 'Message: .*' <<<"$out" | cut -c1-150)…"
deposit fill-2 "$SRC" $((MAX - 10))
expect_eq $((MAX - 10)) "$(json_field "$out" balance)" "$SRC filled up to the ceiling"
wait_status "$SRC~p1" TRANSFER_STATUS_FAILED 60 || true
reason=$(transfer_field "$SRC~p1" failureReason)
if grep -q ceiling <<<"$reason"; then pass "why: $(cut -c1-100 <<<"$reason")…"; else fail "failureReason: $reason"; fi
wait_status "$HA~h1" TRANSFER_STATUS_COMPLETED 60 || true
expect_eq "$MAX $MAX" "$(balance "$SRC") $(balance "$DST")" "$SRC refunded in full; $DST untouched"
expect_eq "70 30" "$(balance "$HA") $(balance "$HB")" "$HA and $HB"

step "2. a shard without a majority holds up only its own transfers"
S1=$(on_shard carol 0) T1=$(on_shard dave 2) S2=$(on_shard erin 1) T2=$(on_shard frank 0)
for a in "$S1" "$T1" "$S2" "$T2"; do open_account "$a"; done
deposit fund "$S1" 100
deposit fund "$S2" 100
leave_pending s1 "$S1" "$T1" 10
kill -STOP "$(<"$ANATOMY_DIR/run/storage-s2-r1.pid")" "$(<"$ANATOMY_DIR/run/storage-s2-r2.pid")"
pass "shard 2 has no majority: replicas 1 and 2 frozen (SIGSTOP), before $S1~s1's credit"
leave_pending h2 "$S2" "$T2" 20
wait_status "$S2~h2" TRANSFER_STATUS_COMPLETED 40 || true
expect_eq TRANSFER_STATUS_PENDING "$(transfer_field "$S1~s1" status)" "$S1~s1 (to shard 2) meanwhile"
limit=$((SECONDS + 40))
until grep -q "transfer recovery failed.*$S1~s1" "$ANATOMY_DIR/logs/business-1.log" 2>/dev/null; do
  ((SECONDS < limit)) || { fail "no recovery failure recorded for $S1~s1"; break; }
  sleep 0.5
done
grep -q "transfer recovery failed.*$S1~s1" "$ANATOMY_DIR/logs/business-1.log" &&
  pass "its failure is recorded, to retry later: $(grep "transfer recovery failed.*$S1~s1" "$ANATOMY_DIR/logs/business-1.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-160)…"
thaw
pass "shard 2 thawed"
wait_status "$S1~s1" TRANSFER_STATUS_COMPLETED 60 || true
expect_eq "90 10 80 20" "$(balance "$S1") $(balance "$T1") $(balance "$S2") $(balance "$T2")" "balances"
rm -f "$LOG"
finish
