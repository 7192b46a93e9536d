#!/usr/bin/env bash
# shellcheck disable=SC2154  # $out is set by call() in lib.sh (printf -v)
# End-to-end: every Ledger RPC through the real grpcurl, and the same API
# over HTTP/JSON through the real curl, on a local cluster of its own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-api"
OFFSET=5000
GW="127.0.0.1:$((50051 + OFFSET))"
HTTP="http://127.0.0.1:$((8080 + OFFSET))"
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
LOG="$ROOT/.e2e-api.log"

cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --gateways 1 >"$LOG" 2>&1 || { cat "$LOG"; die "up.sh failed"; }

# shard_of ACCOUNT: the shard (of 3) that owns acme/ACCOUNT.
shard_of() {
  python3 -c 'import sys, zlib; s = zlib.crc32(("acme/" + sys.argv[1]).encode()) % 1024; print(0 if s < 341 else 1 if s < 682 else 2)' "$1"
}
# Accounts chosen so that two share a shard and a third does not.
SRC=alice
SAME=$(for i in $(seq 1 200); do a="same$i"; [[ $(shard_of $a) == $(shard_of $SRC) ]] && { echo $a; break; }; done)
OTHER=$(for i in $(seq 1 200); do a="other$i"; [[ $(shard_of $a) != $(shard_of $SRC) ]] && { echo $a; break; }; done)

step "set-up: $SRC and $SAME share a shard, $OTHER is elsewhere"
for a in "$SRC" "$SAME" "$OTHER"; do
  call out "${ACME[@]}" -d "{\"request_id\":\"open-$a\",\"account_id\":\"$a\"}" "$GW" "$L/CreateAccount"
done
call out "${ACME[@]}" -d "{\"request_id\":\"fund\",\"account_id\":\"$SRC\",\"amount\":\"1000\"}" "$GW" "$L/Deposit"
expect_eq 1000 "$(json_field "$out" balance)" "$SRC funded"

step "Transfer on one shard and across shards"
call out "${ACME[@]}" -d "{\"request_id\":\"t-same\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"$SAME\",\"amount\":\"100\"}" "$GW" "$L/Transfer"
expect_eq TRANSFER_STATUS_COMPLETED "$(json_field "$out" status)" "same-shard transfer"
expect_eq "$SRC~t-same" "$(json_field "$out" transferId)" "transfer id derived from the request id"
call out "${ACME[@]}" -d "{\"request_id\":\"t-cross\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"$OTHER\",\"amount\":\"250\"}" "$GW" "$L/Transfer"
expect_eq TRANSFER_STATUS_COMPLETED "$(json_field "$out" status)" "cross-shard transfer"
call out "${ACME[@]}" -d "{\"request_id\":\"t-cross\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"$OTHER\",\"amount\":\"250\"}" "$GW" "$L/Transfer"
expect_eq TRANSFER_STATUS_COMPLETED "$(json_field "$out" status)" "a retried transfer finds the same one"
call out "${ACME[@]}" -d "{\"account_id\":\"$SRC\"}" "$GW" "$L/GetAccount"
expect_eq 650 "$(json_field "$out" balance)" "$SRC after both (applied once)"
call out "${ACME[@]}" -d "{\"transfer_id\":\"$SRC~t-cross\"}" "$GW" "$L/GetTransfer"
expect_eq 250 "$(json_field "$out" amount)" "GetTransfer"

step "refused transfers change nothing"
call out "${ACME[@]}" -d "{\"request_id\":\"t-self\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"$SRC\",\"amount\":\"1\"}" "$GW" "$L/Transfer"
expect_code InvalidArgument "$out" "self-transfer"
call out "${ACME[@]}" -d "{\"request_id\":\"t-big\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"$OTHER\",\"amount\":\"100000\"}" "$GW" "$L/Transfer"
expect_code FailedPrecondition "$out" "overdraft"
call out "${ACME[@]}" -d "{\"request_id\":\"t-nobody\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"nobody\",\"amount\":\"1\"}" "$GW" "$L/Transfer"
expect_code NotFound "$out" "unknown destination"
call out "${ACME[@]}" -d "{\"request_id\":\"t-cross\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"$OTHER\",\"amount\":\"7\"}" "$GW" "$L/Transfer"
expect_code FailedPrecondition "$out" "request_id reused with other arguments"
call out "${ACME[@]}" -d '{"transfer_id":"alice~never"}' "$GW" "$L/GetTransfer"
expect_code NotFound "$out" "unknown transfer"
call out -H 'authorization: Bearer dev-key-globex' -d "{\"transfer_id\":\"$SRC~t-cross\"}" "$GW" "$L/GetTransfer"
expect_code NotFound "$out" "another tenant's transfer"
call out "${ACME[@]}" -d "{\"account_id\":\"$SRC\"}" "$GW" "$L/GetAccount"
expect_eq 650 "$(json_field "$out" balance)" "$SRC unchanged by the refusals"

step "ListAccounts pages through every shard in account_id order"
for i in 1 2 3 4 5; do
  call out "${ACME[@]}" -d "{\"request_id\":\"open-p$i\",\"account_id\":\"page$i\"}" "$GW" "$L/CreateAccount"
done
ids=() token=""
for _ in 1 2 3 4 5 6; do
  call out "${ACME[@]}" -d "{\"page_size\":3,\"page_token\":\"$token\"}" "$GW" "$L/ListAccounts"
  mapfile -t page < <(python3 -c 'import json,sys; [print(a["accountId"]) for a in json.loads(sys.argv[1]).get("accounts", [])]' "$out")
  ids+=("${page[@]}")
  token=$(json_field "$out" nextPageToken)
  [[ -n $token ]] || break
done
expected=$(printf '%s\n' "$SRC" "$SAME" "$OTHER" page1 page2 page3 page4 page5 | sort | tr '\n' ' ')
expect_eq "$expected" "$(printf '%s\n' "${ids[@]}" | tr '\n' ' ')" "every account once, sorted"
call out -H 'authorization: Bearer dev-key-globex' -d '{}' "$GW" "$L/ListAccounts"
expect_eq "" "$(json_field "$out" accounts)" "globex sees none of acme's accounts"

step "ListEntries: newest first, paged, replaying to the balance"
call out "${ACME[@]}" -d "{\"account_id\":\"$SRC\",\"page_size\":2}" "$GW" "$L/ListEntries"
first=$(python3 -c 'import json,sys; print(" ".join(e["amount"] for e in json.loads(sys.argv[1])["entries"]))' "$out")
expect_eq "-250 -100" "$first" "the newest two entries"
token=$(json_field "$out" nextPageToken)
call out "${ACME[@]}" -d "{\"account_id\":\"$SRC\",\"page_size\":2,\"page_token\":\"$token\"}" "$GW" "$L/ListEntries"
expect_eq "1000" "$(python3 -c 'import json,sys; print(" ".join(e["amount"] for e in json.loads(sys.argv[1])["entries"]))' "$out")" "the oldest entry, on the second page"

step "CloseAccount"
call out "${ACME[@]}" -d "{\"request_id\":\"close-1\",\"account_id\":\"$SAME\"}" "$GW" "$L/CloseAccount"
expect_code FailedPrecondition "$out" "closing an account that holds money"
call out "${ACME[@]}" -d "{\"request_id\":\"close-2\",\"account_id\":\"page1\"}" "$GW" "$L/CloseAccount"
expect_eq ACCOUNT_STATUS_CLOSED "$(json_field "$out" status)" "closing an empty account"
call out "${ACME[@]}" -d '{"request_id":"dep-closed","account_id":"page1","amount":"1"}' "$GW" "$L/Deposit"
expect_code FailedPrecondition "$out" "a deposit to a closed account"
call out "${ACME[@]}" -d "{\"request_id\":\"t-closed\",\"from_account_id\":\"$SRC\",\"to_account_id\":\"page1\",\"amount\":\"1\"}" "$GW" "$L/Transfer"
expect_code FailedPrecondition "$out" "a transfer to a closed account"

step "HTTP/JSON with curl: the same API"
H='authorization: Bearer dev-key-acme'
http() { # METHOD PATH [BODY] -> "status body"
  local body
  if (($# > 2)); then
    body=$(curl -s -o - -w ' %{http_code}' -X "$1" -H "$H" -H 'content-type: application/json' -d "$3" "$HTTP$2")
  else
    body=$(curl -s -o - -w ' %{http_code}' -X "$1" -H "$H" "$HTTP$2")
  fi
  echo "${body##* } ${body% *}"
}
read -r code json <<<"$(http GET "/v1/accounts/$SRC")"
expect_eq 200 "$code" "GET /v1/accounts/{id}"
expect_eq 650 "$(json_field "$json" balance)" "its balance (int64 as a string)"
read -r code json <<<"$(http POST "/v1/accounts/$SRC:deposit" '{"requestId":"h-dep","amount":"5"}')"
expect_eq "200 655" "$code $(json_field "$json" balance)" "POST /v1/accounts/{id}:deposit"
read -r code json <<<"$(http POST "/v1/accounts/$SRC:withdraw" '{"request_id":"h-wd","amount":"5"}')"
expect_eq "200 650" "$code $(json_field "$json" balance)" "POST /v1/accounts/{id}:withdraw (snake_case body)"
read -r code json <<<"$(http POST /v1/accounts '{"requestId":"h-open","accountId":"webby"}')"
expect_eq 200 "$code" "POST /v1/accounts"
read -r code json <<<"$(http POST /v1/transfers "{\"requestId\":\"h-t\",\"fromAccountId\":\"$SRC\",\"toAccountId\":\"webby\",\"amount\":\"10\"}")"
expect_eq "200 TRANSFER_STATUS_COMPLETED" "$code $(json_field "$json" status)" "POST /v1/transfers"
read -r code json <<<"$(http GET "/v1/transfers/$SRC~h-t")"
expect_eq 200 "$code" "GET /v1/transfers/{id}"
read -r code json <<<"$(http GET "/v1/accounts/webby/entries?page_size=5")"
expect_eq "200 10" "$code $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["entries"][0]["amount"])' "$json")" "GET /v1/accounts/{id}/entries"
read -r code json <<<"$(http GET "/v1/accounts?page_size=2")"
expect_eq 200 "$code" "GET /v1/accounts"
read -r code json <<<"$(http POST /v1/accounts/webby:close '{"requestId":"h-close"}')"
expect_eq "400 FAILED_PRECONDITION" "$code $(json_field "$json" code)" "POST :close with money left -> 400"
read -r code json <<<"$(http GET /v1/accounts/nobody)"
expect_eq "404 NOT_FOUND" "$code $(json_field "$json" code)" "unknown account -> 404"
read -r code json <<<"$(http POST "/v1/accounts/$SRC:deposit" '{"requestId":"h-dep","amount":"6"}')"
expect_eq "400 FAILED_PRECONDITION" "$code $(json_field "$json" code)" "request_id reused with another amount -> 400"
read -r code json <<<"$(http POST /v1/accounts '{"requestId":"h-open-3","accountId":"webby"}')"
expect_eq "409 ALREADY_EXISTS" "$code $(json_field "$json" code)" "existing account -> 409"
read -r code json <<<"$(http POST /v1/transfers '{not json')"
expect_eq "400 INVALID_ARGUMENT" "$code $(json_field "$json" code)" "malformed JSON -> 400"
body=$(curl -s -o - -w ' %{http_code}' "$HTTP/v1/accounts/$SRC")
expect_eq "401" "${body##* }" "no key -> 401"
id=$(curl -s -D - -o /dev/null -H "$H" "$HTTP/v1/accounts/$SRC" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-request-id"{print $2}')
if [[ -n $id ]]; then pass "every response carries an x-request-id ($id)"; else fail "no x-request-id"; fi

rm -f "$LOG"
finish
