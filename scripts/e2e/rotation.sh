#!/usr/bin/env bash
# End-to-end: every certificate rotated under load, without a restart of
# the processes that hold them, on a real local cluster (2 shards x 3
# replicas, 2 business, 1 gateway), with 0 failed requests:
#   renew every pair → start a CA rollover (trust old + new) → renew every
#   pair from the new CA → retire the old CA,
# while loadgen puts to storage directly (as the operator) and deposits
# through the gateway (gateway → business → storage). Between the steps a
# business replica and a storage follower are restarted, so that fresh
# handshakes happen with the new certificates on every hop; the processes
# that are never restarted must have reloaded their files each time.
# Afterwards a certificate of the retired CA is refused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-rotation"
LOG_DIR="$ANATOMY_DIR/logs" RUN_DIR="$ANATOMY_DIR/run"
OFFSET=9000
LOG="$ROOT/.e2e-rotation.log"
TLS="$ANATOMY_DIR/tls"
OUT="$ANATOMY_DIR/out"
GW="127.0.0.1:$((50051 + OFFSET))"

cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" --shards 2 --replicas 3 \
  --businesses 2 --gateways 1 >"$LOG" 2>&1 || { cat "$LOG"; die "up.sh failed"; }
mkdir -p "$OUT"
certs() { "$BIN_DIR/anatomy-certs" --dir "$TLS" "$@" >>"$LOG"; }

# Processes never restarted here: each must reload every change itself.
STEADY=(gateway-1 storage-s0-r1 storage-s1-r1 storage-s1-r2)
reloads() { grep -c "reloaded the TLS certificate" "$LOG_DIR/$1.log" || true; }
# wait_reloads N: until every steady process has reloaded N times (bounded).
wait_reloads() {
  local limit=$((SECONDS + 20)) p
  for p in "${STEADY[@]}"; do
    until (($(reloads "$p") >= $1)); do
      ((SECONDS < limit)) || { fail "$p reloaded $(reloads "$p") times, expected $1"; return; }
      sleep 0.2
    done
  done
  pass "every steady process reloaded its files ($1)"
}
# restart NAME: SIGTERM (drain), then up.sh starts it again with the current files.
restart() {
  local pid
  pid=$(<"$RUN_DIR/$1.pid")
  kill -TERM "$pid"
  while pid_alive "$pid"; do sleep 0.1; done
  "$ROOT/scripts/up.sh" --no-build >>"$LOG" 2>&1 || fail "up.sh could not restart $1"
  printf '  restarted %s\n' "$1"
}

step "load: storage puts (operator) and deposits (gateway → business → storage)"
"$BIN_DIR/loadgen" storage --shard-map "$ANATOMY_DIR/shard-map.toml" --op put --concurrency 16 \
  --duration 45s --timeout 10s --quiet --json "$OUT/storage.jsonl" >>"$LOG" 2>&1 &
PUTS=$!
"$BIN_DIR/loadgen" deposit --gateway "$GW" --accounts 20 --concurrency 8 \
  --duration 45s --timeout 10s --quiet --json "$OUT/deposits.jsonl" >>"$LOG" 2>&1 &
DEPOSITS=$!
sleep 4

step "rotation 1: a new pair for every identity"
certs renew
wait_reloads 1
restart business-1

step "rotation 2: CA rollover — trust the new CA next to the old one"
cp "$TLS/operator.pem" "$OUT/old-operator.pem" && cp "$TLS/operator.key" "$OUT/old-operator.key"
certs ca-rollover
wait_reloads 2
step "rotation 3: every pair from the new CA"
certs renew
wait_reloads 3
restart business-2
restart storage-s0-r3

step "rotation 4: retire the old CA"
certs ca-retire
wait_reloads 4
restart business-1

step "the load: no request failed"
wait "$PUTS" || fail "loadgen storage exited with an error"
wait "$DEPOSITS" || fail "loadgen deposit exited with an error"
for run in storage deposits; do
  row=$(tail -n 1 "$OUT/$run.jsonl")
  ok=$(json_field "$row" ok) failed=$(json_field "$row" failed)
  expect_eq 0 "$failed" "$run that failed (of $ok)"
  ((failed == 0)) || printf '    errors: %s\n' "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get("summary",{}).get("errors", r.get("errors")))' "$row" 2>/dev/null)"
  ((ok > 0)) || fail "$run: nothing succeeded"
done
# A failure's kind alone rarely says which hop failed: show what loadgen
# wrote of each failure, and what the services warned of.
if grep -q '^failed:' "$LOG"; then
  grep '^failed:' "$LOG" | sed 's/^/    loadgen: /'
  for p in gateway-1 business-1 business-2; do
    grep -hE ' (WARN|ERROR) ' "$LOG_DIR/$p.log" | tail -n 5 | sed "s/^/    $p: /" || true
  done
fi

step "after the rollover"
# The server must be up and answering the new certificates first, so that
# a failed call below can only be the old certificate's refusal.
out=$(operator -max-time 5 "127.0.0.1:$((50071 + OFFSET))" anatomy.storage.v1.Admin/ClusterStatus 2>&1 || true)
reachable=$(grep -c '"reachable": true' <<<"$out" || true)
expect_eq 6 "$reachable" "replicas every replica reaches with the new certificates (ClusterStatus)"
status=0
out=$(grpcurl -cacert "$TLS/ca.pem" -cert "$OUT/old-operator.pem" -key "$OUT/old-operator.key" -max-time 5 \
  "127.0.0.1:$((50071 + OFFSET))" anatomy.storage.v1.Admin/NodeStatus 2>&1) || status=$?
# TLS 1.3: the server refuses the client certificate after the client
# finished its side, so grpcurl may see the refusal as a broken connection,
# or (when the alert lands after grpc-go counted the connection as up) keep
# redialling until its deadline: "context deadline exceeded".
if ((status == 0)) || grep -q '"role"' <<<"$out"; then fail "the retired CA's certificate got in: $out"
elif grep -qiE "unknown certificate authority|tls:|handshake|broken pipe|connection (reset|closed)|EOF|context deadline exceeded" <<<"$out"; then
  pass "a certificate of the retired CA is refused"
else fail "unexpected answer to a certificate of the retired CA: $out"; fi

finish
