#!/usr/bin/env bash
# End-to-end: service identity on a real local cluster (2 shards x 3
# replicas, 1 business, 1 gateway), over real mutual TLS, with the real
# grpcurl.
#  1. the authorization matrix: every internal server x every identity
#     (none, plaintext, a certificate from another CA, gateway, business,
#     operator, a storage replica of the other shard, a peer replica):
#     allowed calls get past authorization, the rest are refused with
#     PermissionDenied or fail the TLS handshake;
#  2. health without a certificate on the plaintext health port only;
#  3. a forged Raft AppendEntries and Vote (a higher term) from non-peers:
#     refused, the follower's term and log unchanged; the same message
#     from a peer replica is taken (which is why only peers may send it);
#  4. the public edge with server TLS (--public-tls-cert/--public-tls-key):
#     gRPC and HTTP/JSON over TLS work, plaintext does not.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-identity"
OFFSET=7000
LOG="$ROOT/.e2e-identity.log"
TLS="$ANATOMY_DIR/tls"
FOREIGN="$ANATOMY_DIR/foreign-ca"

PUBLIC_GW_PID=""
cleanup() {
  [[ -n $PUBLIC_GW_PID ]] && kill "$PUBLIC_GW_PID" 2>/dev/null
  "$ROOT/scripts/down.sh" --wipe >/dev/null || true
}
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --shards 2 --replicas 3 \
  --businesses 1 --gateways 1 >"$LOG" 2>&1 || { cat "$LOG"; die "up.sh failed"; }
"$BIN_DIR/anatomy-certs" --dir "$FOREIGN" init --shards 2 --replicas 3 >/dev/null

BUSINESS="127.0.0.1:$((50061 + OFFSET))"
storage_addr() { echo "127.0.0.1:$((50071 + OFFSET + $1 * 3 + $2 - 1))"; }
S0R1=$(storage_addr 0 1)

# as WHO ARGS...: grpcurl as WHO: none (TLS, no certificate), plaintext,
# foreign (the operator of another CA), or an identity of this cluster.
as() {
  local who=$1
  shift
  case $who in
    none) grpcurl -cacert "$TLS/ca.pem" -max-time 5 "$@" ;;
    plaintext) grpcurl -plaintext -max-time 5 "$@" ;;
    foreign) grpcurl -cacert "$TLS/ca.pem" -cert "$FOREIGN/operator.pem" -key "$FOREIGN/operator.key" -max-time 5 "$@" ;;
    *) grpcurl -cacert "$TLS/ca.pem" -cert "$TLS/$who.pem" -key "$TLS/$who.key" -max-time 5 "$@" ;;
  esac
}

# outcome OUTPUT: allowed (the call got past authorization, whatever the
# service answered), denied, unauthenticated, or refused (no gRPC at all:
# the TLS handshake or the connection failed).
outcome() {
  if grep -q "Code: PermissionDenied" <<<"$1"; then echo denied
  elif grep -q "Code: Unauthenticated" <<<"$1"; then echo unauthenticated
  elif grep -qiE "tls:|certificate|handshake|Failed to dial|connection (reset|closed|error)|EOF" <<<"$1"; then echo refused
  else echo allowed; fi
}

# check SERVER WHO WANT ARGS...: one cell of the matrix.
check() {
  local server=$1 who=$2 want=$3 out got
  shift 3
  out=$(as "$who" "$@" 2>&1 || true)
  got=$(outcome "$out")
  if [[ $got == "$want" ]]; then
    pass "$server as $who: $got$([[ $got == allowed ]] && printf ' (%s)' "$(grep -m1 -o 'Code: [A-Za-z]*' <<<"$out" || echo OK)")"
  else
    fail "$server as $who: expected $want, got $got: $(tr '\n' ' ' <<<"$out" | cut -c1-300)"
  fi
}

step "1. the matrix"
LEDGER=(-d '{"tenant":"acme","account_id":"nobody"}' "$BUSINESS" anatomy.business.v1.Ledger/GetAccount)
KV=(-d '{"route":{"shardId":0,"mapVersion":"1"},"partition":"acme/x","keys":[]}' "$S0R1" anatomy.storage.v1.Kv/Read)
RAFT=(-d '{"shardId":0,"targetNode":"1","mapVersion":"1"}' "$S0R1" anatomy.storage.v1.Raft/Vote)
ADMIN=("$S0R1" anatomy.storage.v1.Admin/NodeStatus)
#         who            Ledger    Kv       Raft     Admin
while read -r who ledger kv raft admin; do
  check "business Ledger" "$who" "$ledger" "${LEDGER[@]}"
  check "storage Kv" "$who" "$kv" "${KV[@]}"
  check "storage Raft" "$who" "$raft" "${RAFT[@]}"
  check "storage Admin" "$who" "$admin" "${ADMIN[@]}"
done <<'MATRIX'
none           refused   refused  refused  refused
plaintext      refused   refused  refused  refused
foreign        refused   refused  refused  refused
gateway        allowed   denied   denied   denied
business       denied    allowed  denied   denied
operator       allowed   allowed  denied   allowed
storage-s1-r1  denied    denied   denied   allowed
storage-s0-r2  denied    denied   allowed  allowed
MATRIX

step "2. health: open on the health port, authenticated on the gRPC port"
out=$(grpcurl -plaintext -max-time 5 "127.0.0.1:$((50071 + OFFSET + 500))" grpc.health.v1.Health/Check 2>&1 || true)
if grep -q SERVING <<<"$out"; then pass "plaintext health port: SERVING, no certificate needed"; else fail "health port: $out"; fi
out=$(as none "$S0R1" grpc.health.v1.Health/Check 2>&1 || true)
expect_eq refused "$(outcome "$out")" "health on the gRPC port without a certificate"
out=$(as gateway "$S0R1" list 2>&1 || true)
if grep -q anatomy.storage.v1.Kv <<<"$out"; then pass "reflection on storage for any identity (gateway)"; else fail "reflection: $out"; fi

step "3. forged Raft messages"
# The follower of shard 0 that is not replica 2 (replica 2 plays the peer).
leader=$(json_field "$(operator -max-time 5 "$S0R1" anatomy.storage.v1.Admin/NodeStatus)" leaderId)
target=1
[[ $leader == 1 ]] && target=3
TARGET=$(storage_addr 0 "$target")
state() {
  local s
  s=$(operator -max-time 5 "$TARGET" anatomy.storage.v1.Admin/NodeStatus)
  echo "term=$(json_field "$s" term) log=$(json_field "$s" lastLogIndex)"
}
# postcard: AppendEntriesRequest{vote{term, node 2, committed}, prev none,
# entries [], commit none}; VoteRequest{vote{term, node 2, uncommitted}, last none}.
payload() {
  python3 - "$@" <<'PY'
import base64, sys
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
kind, term = sys.argv[1], int(sys.argv[2])
vote = varint(term) + varint(2)
body = vote + (b"\x01\x00\x00\x00" if kind == "append" else b"\x00\x00")
print(base64.b64encode(body).decode())
PY
}
before=$(state)
term=$(sed 's/term=\([0-9]*\).*/\1/' <<<"$before")
high=$((term + 100))
for who in operator business storage-s1-r1; do
  for rpc in AppendEntries Vote; do
    kind=vote; [[ $rpc == AppendEntries ]] && kind=append
    out=$(as "$who" -d "{\"shardId\":0,\"targetNode\":\"$target\",\"mapVersion\":\"1\",\"payload\":\"$(payload "$kind" "$high")\"}" \
      "$TARGET" "anatomy.storage.v1.Raft/$rpc" 2>&1 || true)
    expect_eq denied "$(outcome "$out")" "forged Raft/$rpc (term $high) from $who"
  done
done
expect_eq "$before" "$(state)" "the follower's term and log after the forgeries"
# The control: the same AppendEntries from a peer is taken.
out=$(as storage-s0-r2 -d "{\"shardId\":0,\"targetNode\":\"$target\",\"mapVersion\":\"1\",\"payload\":\"$(payload append "$high")\"}" \
  "$TARGET" anatomy.storage.v1.Raft/AppendEntries 2>&1 || true)
after=$(state)
if [[ $after == "term=$high "* ]]; then pass "the same AppendEntries from a peer (storage-s0-r2) moved the term to $high"
else fail "the peer's AppendEntries was not taken ($after): $out"; fi

step "4. the public edge with server TLS"
PUB=$((50051 + OFFSET + 100))
"$BIN_DIR/gateway" --listen "127.0.0.1:$PUB" --http-listen "127.0.0.1:$((PUB + 1))" \
  --metrics-listen "127.0.0.1:$((PUB + 2))" --health-listen "127.0.0.1:$((PUB + 3))" \
  --business-addr "$BUSINESS" --tls-dir "$TLS" --api-keys dev-key-acme=acme \
  --public-tls-cert "$TLS/gateway.pem" --public-tls-key "$TLS/gateway.key" >>"$LOG" 2>&1 &
PUBLIC_GW_PID=$!
"$BIN_DIR/gateway" healthcheck --addr "127.0.0.1:$((PUB + 3))" --wait 20s >/dev/null ||
  fail "the gateway with public TLS did not become ready"
out=$(grpcurl -cacert "$TLS/ca.pem" -max-time 5 -H 'authorization: Bearer dev-key-acme' \
  -d '{"request_id":"pub-1","account_id":"tls-alice"}' "127.0.0.1:$PUB" anatomy.gateway.v1.Ledger/CreateAccount 2>&1 || true)
if grep -q '"accountId": "tls-alice"' <<<"$out"; then pass "gRPC over TLS on the public port"; else fail "gRPC over TLS: $out"; fi
out=$(curl -s --max-time 5 --cacert "$TLS/ca.pem" -H 'authorization: Bearer dev-key-acme' \
  "https://127.0.0.1:$((PUB + 1))/v1/accounts/tls-alice" || true)
if grep -q '"accountId":"tls-alice"' <<<"$out"; then pass "HTTP/JSON over TLS on the public port"; else fail "HTTPS: $out"; fi
out=$(grpcurl -plaintext -max-time 5 "127.0.0.1:$PUB" list 2>&1 || true)
expect_eq refused "$(outcome "$out")" "plaintext to the public port with TLS on"

finish
