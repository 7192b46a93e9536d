#!/usr/bin/env bash
# shellcheck disable=SC2154  # $out is set by call() in lib.sh (printf -v)
# End-to-end: a business replica dies in the middle of a cross-shard
# transfer; after a restart its recovery worker finishes the transfer.
# --saga-step-pause holds each saga step for 3 s so the kill lands between
# the debit and the credit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-saga"
OFFSET=6000
GW="127.0.0.1:$((50051 + OFFSET))"
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
LOG="$ROOT/.e2e-saga.log"

cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
ANATOMY_SAGA_STEP_PAUSE=3s ANATOMY_RECOVERY_AFTER=2s ANATOMY_RECOVERY_INTERVAL=1s \
  "$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --businesses 1 --gateways 1 >"$LOG" 2>&1 ||
  { cat "$LOG"; die "up.sh failed"; }

shard_of() {
  python3 -c 'import sys, zlib; s = zlib.crc32(("acme/" + sys.argv[1]).encode()) % 1024; print(0 if s < 341 else 1 if s < 682 else 2)' "$1"
}
TO=$(for i in $(seq 1 200); do a="payee$i"; [[ $(shard_of $a) != $(shard_of alice) ]] && { echo $a; break; }; done)
balance() { json_field "$(grpcurl -plaintext "${ACME[@]}" -d "{\"account_id\":\"$1\"}" "$GW" "$L/GetAccount" 2>&1)" balance; }

step "alice (shard $(shard_of alice)) sends 40 to $TO (shard $(shard_of "$TO"))"
for a in alice "$TO"; do call out "${ACME[@]}" -d "{\"request_id\":\"open-$a\",\"account_id\":\"$a\"}" "$GW" "$L/CreateAccount"; done
call out "${ACME[@]}" -d '{"request_id":"fund","account_id":"alice","amount":"100"}' "$GW" "$L/Deposit"
grpcurl -plaintext -max-time 20 "${ACME[@]}" -d "{\"request_id\":\"t1\",\"from_account_id\":\"alice\",\"to_account_id\":\"$TO\",\"amount\":\"40\"}" \
  "$GW" "$L/Transfer" >"$ANATOMY_DIR/transfer.out" 2>&1 &
CALL=$!
limit=$((SECONDS + 20))
until [[ $(balance alice) == 60 ]]; do
  ((SECONDS < limit)) || die "the debit never happened"
  sleep 0.2
done
pass "step 1 done: alice debited (60), $TO not yet credited ($(balance "$TO" | sed 's/^$/0/'))"

step "kill -9 the business replica between the debit and the credit"
kill -9 "$(cat "$ANATOMY_DIR/run/business-1.pid")"
wait "$CALL" || true
if grep -q "Code:" "$ANATOMY_DIR/transfer.out"; then pass "the caller got no result: $(grep Code: "$ANATOMY_DIR/transfer.out" | head -1)"; else fail "the call answered: $(cat "$ANATOMY_DIR/transfer.out")"; fi

step "restart it: its recovery worker finishes the transfer"
"$ROOT/scripts/up.sh" --no-build >>"$LOG" 2>&1 || die "up.sh failed"
limit=$((SECONDS + 40))
while :; do
  call out "${ACME[@]}" -d '{"transfer_id":"alice~t1"}' "$GW" "$L/GetTransfer"
  status=$(json_field "$out" status)
  [[ $status == TRANSFER_STATUS_COMPLETED ]] && break
  ((SECONDS < limit)) || { fail "still $status after 40 s"; break; }
  sleep 0.5
done
expect_eq TRANSFER_STATUS_COMPLETED "$status" "GetTransfer alice~t1"
expect_eq "60 40" "$(balance alice) $(balance "$TO")" "alice and $TO"
if grep -q "recovery ended a pending transfer" "$ANATOMY_DIR/logs/business-1.log"; then
  pass "business-1's log shows the recovery: $(grep 'recovery ended a pending transfer' "$ANATOMY_DIR/logs/business-1.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-160)"
else
  fail "no recovery in business-1's log"
fi
rm -f "$LOG"
finish
