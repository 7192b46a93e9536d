#!/usr/bin/env bash
# shellcheck disable=SC2154  # $out is set by call() in lib.sh (printf -v)
# End-to-end: the walking skeleton as a user drives it, through the real
# grpcurl only, on a local cluster of its own (own data dir and ports).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-basics"
OFFSET=1000
GW="127.0.0.1:$((50051 + OFFSET))"
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
GLOBEX=(-H 'authorization: Bearer dev-key-globex')

cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" >"$ROOT/.e2e-basics-up.log" 2>&1 ||
  { cat "$ROOT/.e2e-basics-up.log"; die "up.sh failed"; }

step "reflection lists the public API"
call out "$GW" list
if grep -qx "$L" <<<"$out"; then pass "grpcurl list shows $L"; else fail "grpcurl list: $out"; fi
call out "$GW" describe "$L.Deposit"
if grep -q "DepositRequest" <<<"$out"; then pass "grpcurl describe works"; else fail "describe: $out"; fi

step "no key, unknown key"
call out -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_code Unauthenticated "$out" "GetAccount without a key"
call out -H 'authorization: Bearer wrong' -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_code Unauthenticated "$out" "GetAccount with an unknown key"

step "create, deposit, withdraw, get"
call out "${ACME[@]}" -d '{"request_id":"c-1","account_id":"alice"}' "$GW" "$L/CreateAccount"
expect_eq ACCOUNT_STATUS_OPEN "$(json_field "$out" status)" "new account status"
call out "${ACME[@]}" -d '{"request_id":"d-1","account_id":"alice","amount":"1000"}' "$GW" "$L/Deposit"
expect_eq 1000 "$(json_field "$out" balance)" "balance after deposit"
call out "${ACME[@]}" -d '{"request_id":"w-1","account_id":"alice","amount":"300"}' "$GW" "$L/Withdraw"
expect_eq 700 "$(json_field "$out" balance)" "balance after withdraw"
call out "${ACME[@]}" -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_eq 700 "$(json_field "$out" balance)" "GetAccount balance"
expect_eq 3 "$(json_field "$out" version)" "GetAccount version"

step "overdraft is refused and changes nothing"
call out "${ACME[@]}" -d '{"request_id":"w-2","account_id":"alice","amount":"701"}' "$GW" "$L/Withdraw"
expect_code FailedPrecondition "$out" "withdraw 701 of 700"
call out "${ACME[@]}" -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_eq 700 "$(json_field "$out" balance)" "balance after the refused overdraft"

step "a replayed request_id applies nothing twice"
call out "${ACME[@]}" -d '{"request_id":"d-1","account_id":"alice","amount":"1000"}' "$GW" "$L/Deposit"
expect_eq 1000 "$(json_field "$out" balance)" "replay returns the first result"
call out "${ACME[@]}" -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_eq 700 "$(json_field "$out" balance)" "balance after the replay"
call out "${ACME[@]}" -d '{"request_id":"d-1","account_id":"alice","amount":"5"}' "$GW" "$L/Deposit"
expect_code FailedPrecondition "$out" "same request_id, different amount"

step "bad input"
call out "${ACME[@]}" -d '{"request_id":"c-2","account_id":"alice"}' "$GW" "$L/CreateAccount"
expect_code AlreadyExists "$out" "create an existing account"
call out "${ACME[@]}" -d '{"request_id":"d-9","account_id":"no such","amount":"1"}' "$GW" "$L/Deposit"
expect_code InvalidArgument "$out" "bad account_id"
call out "${ACME[@]}" -d '{"request_id":"d-9","account_id":"alice","amount":"0"}' "$GW" "$L/Deposit"
expect_code InvalidArgument "$out" "zero amount"
call out "${ACME[@]}" -d '{"request_id":"d-9","account_id":"nobody","amount":"1"}' "$GW" "$L/Deposit"
expect_code NotFound "$out" "deposit to an unknown account"

step "tenants are isolated"
call out "${GLOBEX[@]}" -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_code NotFound "$out" "globex reads acme's alice"
call out "${GLOBEX[@]}" -d '{"request_id":"g-1","account_id":"alice","amount":"1"}' "$GW" "$L/Withdraw"
expect_code NotFound "$out" "globex withdraws from acme's alice"

step "kill -9 every storage process, up.sh again: nothing acknowledged is lost"
for f in "$ANATOMY_DIR"/run/storage-*.pid; do kill -9 "$(<"$f")" 2>/dev/null || true; done
for f in "$ANATOMY_DIR"/run/storage-*.pid; do
  while pid_alive "$(<"$f")"; do sleep 0.1; done
done
"$ROOT/scripts/up.sh" --no-build >>"$ROOT/.e2e-basics-up.log" 2>&1 ||
  { tail -40 "$ROOT/.e2e-basics-up.log"; die "up.sh after kill -9 failed"; }
call out "${ACME[@]}" -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
expect_eq 700 "$(json_field "$out" balance)" "balance after every storage replica was killed and restarted"
call out "${ACME[@]}" -d '{"request_id":"d-1","account_id":"alice","amount":"1000"}' "$GW" "$L/Deposit"
expect_eq 1000 "$(json_field "$out" balance)" "the receipt of d-1 survived the restart"

rm -f "$ROOT/.e2e-basics-up.log"
finish
