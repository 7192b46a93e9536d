#!/usr/bin/env bash
# shellcheck disable=SC2154  # $out is set by call() in lib.sh (printf -v)
# End-to-end: the public edge holds against a hostile caller.
#  - 10 000 requests to random paths, gRPC on the gateway's public port and
#    HTTP on its JSON port, leave the number of series in the gateway's
#    /metrics as it was (random paths count as one `unknown` method);
#  - a call asking for a 99999999H deadline, to a shard without a majority,
#    returns within the servers' --max-deadline (3 s here), not never, on
#    gRPC and on HTTP/JSON;
#  - that answer names the dependency that failed, not an internal address;
#  - HTTP/JSON over --max-concurrent-calls answers 429 at once, in the
#    API's JSON error shape.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-edges"
OFFSET=2500
GW="127.0.0.1:$((50051 + OFFSET))"
HTTP="127.0.0.1:$((8080 + OFFSET))"
METRICS="127.0.0.1:$((50051 + OFFSET - 41000))"
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
export ANATOMY_MAX_DEADLINE=3s
LOG="$ROOT/.e2e-edges-up.log"

cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" >"$LOG" 2>&1 || { cat "$LOG"; die "up.sh failed"; }

# series: the number of samples the gateway's /metrics shows.
series() { curl -sf "http://$METRICS/metrics" | grep -cv '^#'; }

step "10 000 requests to random paths do not grow /metrics"
call out "${ACME[@]}" -d '{"request_id":"c-1","account_id":"alice"}' "$GW" "$L/CreateAccount"
curl -s -o /dev/null --http2-prior-knowledge -X POST -H 'content-type: application/grpc' \
  "http://$GW/probe.Unknown/Method" || true
curl -s -o /dev/null "http://$HTTP/v1/probe/unknown" || true
before=$(series)
# 5 000 each. HTTP: curl's URL globbing, over one connection. gRPC: one
# curl a call (curl 7.88 does not reuse an HTTP/2 prior-knowledge
# connection for a second request), four at a time.
seq 1 5000 | xargs -P 4 -I{} curl -s -o /dev/null --http2-prior-knowledge \
  -H 'content-type: application/grpc' "http://$GW/rnd.S{}/M{}" || true
curl -s -o /dev/null "http://$HTTP/v1/rnd[1-50]/p[1-100]" || true
after=$(series)
if ((after - before <= 5)); then
  pass "series before $before, after $after"
else
  fail "10 000 random paths grew /metrics from $before to $after series"
fi
unknown=$(curl -sf "http://$METRICS/metrics" | grep '^grpc_server_started_total' | grep 'grpc_service="unknown"' | awk '{print $NF}')
if [[ ${unknown:-0} -ge 5000 ]]; then pass "counted as unknown: $unknown calls"; else fail "the random calls were not counted as unknown (${unknown:-none})"; fi
if curl -sf "http://$METRICS/metrics" | grep -qE 'grpc_method="M1"|route="/v1/rnd'; then
  fail "a random method became a metric label"
else
  pass "no random method is a label"
fi

step "HTTP/JSON over its concurrency limit answers 429 at once"
# The gateway again with room for 4 requests at once; both business
# replicas frozen, so that 4 requests hold their slots (for their 2 s
# deadline) and the rest find none.
kill "$(<"$ANATOMY_DIR/run/gateway-1.pid")"
while kill -0 "$(<"$ANATOMY_DIR/run/gateway-1.pid")" 2>/dev/null; do sleep 0.1; done
ANATOMY_MAX_CONCURRENT_CALLS=4 "$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" >>"$LOG" 2>&1 ||
  { tail -20 "$LOG"; die "the gateway did not come back"; }
BUSINESS=("$(<"$ANATOMY_DIR/run/business-1.pid")" "$(<"$ANATOMY_DIR/run/business-2.pid")")
kill -STOP "${BUSINESS[@]}"
seq 1 12 | xargs -P 12 -I{} curl -s -o "$ANATOMY_DIR/shed-{}.json" -w '%{http_code} %{time_total}\n' \
  -H 'grpc-timeout: 2S' -H 'authorization: Bearer dev-key-acme' "http://$HTTP/v1/accounts/alice" \
  >"$ANATOMY_DIR/shed.txt" || true
kill -CONT "${BUSINESS[@]}"
shed=$(awk '$1 == 429 && $2 < 0.5' "$ANATOMY_DIR/shed.txt" | wc -l)
held=$(awk '$1 != 429' "$ANATOMY_DIR/shed.txt" | wc -l)
if ((shed >= 6 && held <= 4)); then pass "$shed of 12 refused with 429 in under 0.5 s, $held held a slot"
else fail "expected >= 6 quick 429s and <= 4 held: $(tr '\n' ';' <"$ANATOMY_DIR/shed.txt")"; fi
code=$(grep -l RESOURCE_EXHAUSTED "$ANATOMY_DIR"/shed-*.json | wc -l)
if ((code == shed)); then pass "each 429 has the JSON error shape (RESOURCE_EXHAUSTED)"
else fail "$code of $shed 429 bodies say RESOURCE_EXHAUSTED: $(cat "$ANATOMY_DIR/shed-1.json")"; fi

step "a 99999999H deadline to a shard without a majority returns within the cap"
# Two of three replicas of every shard down: no shard has a majority.
for s in 0 1 2; do
  for r in 1 2; do kill -9 "$(<"$ANATOMY_DIR/run/storage-s$s-r$r.pid")"; done
done
# GetAccount{account_id:"alice"}, framed as gRPC by hand: grpcurl cannot
# send a grpc-timeout of its own choosing.
frame() { printf '\x00\x00\x00\x00\x07\x0a\x05alice'; }
started=$SECONDS
frame | curl -s -o /dev/null --http2-prior-knowledge -X POST --max-time 20 \
  -H 'content-type: application/grpc' -H 'te: trailers' -H 'grpc-timeout: 99999999H' \
  -H 'authorization: Bearer dev-key-acme' --data-binary @- "http://$GW/$L/GetAccount" || true
took=$((SECONDS - started))
if ((took <= 6)); then pass "answered in ${took}s (cap 3 s)"; else fail "answered after ${took}s: the deadline was not capped"; fi

started=$SECONDS
answer=$(curl -s --max-time 20 -H 'grpc-timeout: 99999999H' -H 'authorization: Bearer dev-key-acme' \
  "http://$HTTP/v1/accounts/alice" || true)
took=$((SECONDS - started))
if ((took <= 6)); then pass "HTTP/JSON answered in ${took}s (cap 3 s): $answer"; else fail "HTTP/JSON answered after ${took}s: the deadline was not capped"; fi
if [[ $(json_field "$answer" code) =~ ^(UNAVAILABLE|DEADLINE_EXCEEDED)$ ]]; then pass "in the JSON error shape"
else fail "not the JSON error shape: $answer"; fi

step "the public answer names the dependency, not where it lives"
call out "${ACME[@]}" -max-time 10 -d '{"account_id":"alice"}' "$GW" "$L/GetAccount"
if grep -qE 'Code: (Unavailable|DeadlineExceeded)' <<<"$out"; then pass "GetAccount fails as it should"; else fail "GetAccount: $out"; fi
if grep -qE '127\.0\.0\.1|:5[0-9]{4}' <<<"$out"; then
  fail "the message names an internal address: $out"
else
  pass "no internal address in: $(grep Message <<<"$out" | head -1)"
fi

rm -f "$LOG"
finish
