#!/usr/bin/env bash
# shellcheck disable=SC2154  # $out is set by call() in lib.sh (printf -v)
# End-to-end: distributed tracing and metrics on a real local cluster.
# A real OTLP/gRPC receiver (crates/trace-sink, the collector's
# TraceService) writes every span it gets to a file; the cluster exports to
# it. One Deposit through the gateway must give one trace with a server
# span in gateway, business and storage, each parented on the hop before;
# and gateway-1's /metrics must count the Deposit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export ANATOMY_DIR="$ROOT/.anatomy-e2e-tracing"
OFFSET=2000
GW="127.0.0.1:$((50051 + OFFSET))"
METRICS="http://127.0.0.1:$((50051 + OFFSET - 41000))/metrics"
SINK_ADDR="127.0.0.1:$((4317 + OFFSET))"
SPANS="$ROOT/.anatomy-e2e-tracing-spans.jsonl"
SINK_LOG="$ROOT/.e2e-tracing-sink.log"
UP_LOG="$ROOT/.e2e-tracing-up.log"
WAIT_SPANS=${TRACING_WAIT:-20}
L=anatomy.gateway.v1.Ledger
ACME=(-H 'authorization: Bearer dev-key-acme')
command -v grpcurl >/dev/null || PATH="$ROOT/.venv/bin:$PATH"
command -v grpcurl >/dev/null || die "grpcurl is not on PATH (scripts/test.sh installs it into .venv/)"
for b in storage business gateway trace-sink; do
  [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: cargo build --release --bins"
done

SINK_PID=
cleanup() {
  "$ROOT/scripts/down.sh" --wipe >/dev/null || true
  if [[ -n $SINK_PID ]] && pid_alive "$SINK_PID"; then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  SINK_PID=
}
trap cleanup EXIT
cleanup
rm -f "$SPANS" "$SINK_LOG"

step "an OTLP/gRPC receiver (trace-sink) on $SINK_ADDR"
port_free "${SINK_ADDR##*:}" || die "port ${SINK_ADDR##*:} is taken"
"$BIN_DIR/trace-sink" --listen "$SINK_ADDR" --out "$SPANS" >"$SINK_LOG" 2>&1 &
SINK_PID=$!
limit=$((SECONDS + 10))
while port_free "${SINK_ADDR##*:}"; do
  pid_alive "$SINK_PID" || { cat "$SINK_LOG" >&2; die "trace-sink exited"; }
  ((SECONDS < limit)) || { cat "$SINK_LOG" >&2; die "trace-sink did not listen within 10s"; }
  sleep 0.1
done
pass "trace-sink (pid $SINK_PID) listens"

step "the cluster, exporting to it"
# Only the endpoint and a short batch delay (ms); nothing inherited may
# rename the services or send the spans elsewhere.
unset OTEL_SERVICE_NAME OTEL_RESOURCE_ATTRIBUTES OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \
  OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG OTEL_SDK_DISABLED OTEL_EXPORTER_OTLP_PROTOCOL
export OTEL_EXPORTER_OTLP_ENDPOINT="http://$SINK_ADDR"
export OTEL_BSP_SCHEDULE_DELAY=200
"$ROOT/scripts/up.sh" --no-build --port-offset "$OFFSET" >"$UP_LOG" 2>&1 ||
  { cat "$UP_LOG"; die "up.sh failed"; }
pass "up.sh with OTEL_EXPORTER_OTLP_ENDPOINT=$OTEL_EXPORTER_OTLP_ENDPOINT OTEL_BSP_SCHEDULE_DELAY=$OTEL_BSP_SCHEDULE_DELAY"

# deposit_ok_count: gateway-1's grpc_server_handled_total for Ledger/Deposit, code OK (0 if absent).
deposit_ok_count() {
  local text
  text=$(curl -fsS --max-time 5 "$METRICS") || { echo "unreachable"; return; }
  python3 -c '
import re, sys
want = {"app": "gateway", "grpc_service": "anatomy.gateway.v1.Ledger", "grpc_method": "Deposit", "grpc_code": "OK"}
total = 0.0
for line in sys.stdin:
    m = re.match(r"grpc_server_handled_total\{(.*)\}\s+(\S+)", line)
    if not m:
        continue
    labels = dict(re.findall(r"(\w+)=\"((?:[^\"\\\\]|\\\\.)*)\"", m.group(1)))
    if all(labels.get(k) == v for k, v in want.items()):
        total += float(m.group(2))
print(int(total))
' <<<"$text"
}

# analyze MODE: reads the sink's file. MODE=ready exits 0 once the Deposit's
# trace has server spans from all three services; MODE=check prints the
# trace and every check, and exits non-zero if one failed.
analyze() {
  python3 - "$1" "$SPANS" <<'PY'
import json, sys

mode, path = sys.argv[1], sys.argv[2]
spans = []
try:
    with open(path) as f:
        for line in f:
            if line.strip():
                spans.append(json.loads(line))
except FileNotFoundError:
    pass

failures = []
def check(ok, what):
    if mode == "check":
        print(("  ok: " if ok else "  FAIL: ") + what, file=sys.stdout if ok else sys.stderr)
    if not ok:
        failures.append(what)
    return ok

def is_server(s, service, rpc_service=None, method=None):
    a = s["attributes"]
    return (s["service"] == service and s["kind"] == "server"
            and (rpc_service is None or a.get("rpc.service") == rpc_service)
            and (method is None or a.get("rpc.method") == method))

gw_deposits = [s for s in spans if is_server(s, "gateway", "anatomy.gateway.v1.Ledger", "Deposit")]
biz_deposits = [s for s in spans if is_server(s, "business", "anatomy.business.v1.Ledger", "Deposit")]
if mode == "ready":
    if len(gw_deposits) != 1:
        sys.exit(1)
    trace = [s for s in spans if s["trace_id"] == gw_deposits[0]["trace_id"]]
    services = {s["service"] for s in trace if s["kind"] == "server"}
    by_id = {s["span_id"] for s in trace}
    dangling = [s for s in trace if s["parent_span_id"] and s["parent_span_id"] not in by_id
                and s is not gw_deposits[0]]
    sys.exit(0 if {"gateway", "business", "storage"} <= services and not dangling else 1)

print(f"  the sink received {len(spans)} span(s) from "
      + ", ".join(sorted({s['service'] for s in spans})))
if not check(len(gw_deposits) == 1,
             f"exactly one gateway server span for Ledger/Deposit (got {len(gw_deposits)})"):
    sys.exit(1)
gw = gw_deposits[0]
tid = gw["trace_id"]
trace = [s for s in spans if s["trace_id"] == tid]
by_id = {s["span_id"]: s for s in trace}

# The tree, for the record.
children = {}
for s in trace:
    children.setdefault(s["parent_span_id"], []).append(s)
def show(s, depth):
    a = s["attributes"]
    extra = f" code={a.get('rpc.grpc.status_code')}" if s["kind"] == "server" else ""
    print(f"    {'  ' * depth}{s['service']}: {s['kind']} {s['name']} [{s['span_id']}]{extra}")
    for c in sorted(children.get(s["span_id"], []), key=lambda c: c["start_unix_nano"]):
        show(c, depth + 1)
print(f"  trace {tid}: {len(trace)} span(s)")
show(gw, 0)
orphans = [s for s in trace if s is not gw and s["parent_span_id"] not in by_id]
for s in orphans:
    print(f"    (parent {s['parent_span_id']} not in the trace) {s['service']}: {s['kind']} {s['name']} [{s['span_id']}]")

deposit_traces = {s["trace_id"] for s in gw_deposits + biz_deposits}
check(len(deposit_traces) == 1,
      f"one trace id for the Deposit's gateway and business server spans (got {sorted(deposit_traces)})")
check(gw["parent_span_id"] is None or gw["parent_span_id"] not in by_id,
      "the gateway server span is the trace's root (or parented outside it)")

def chain(s):
    """The ancestors of s within the trace, nearest first; stops at a missing parent."""
    out, seen = [], {s["span_id"]}
    while s["parent_span_id"] in by_id and s["parent_span_id"] not in seen:
        s = by_id[s["parent_span_id"]]
        seen.add(s["span_id"])
        out.append(s)
    return out

biz = [s for s in trace if is_server(s, "business")]
if check(len(biz) >= 1, f"a business server span in the trace (got {len(biz)})"):
    b = biz[0]
    check(b["attributes"].get("rpc.method") == "Deposit"
          and b["attributes"].get("rpc.service") == "anatomy.business.v1.Ledger",
          f"it is anatomy.business.v1.Ledger/Deposit ({b['name']})")
    parent = by_id.get(b["parent_span_id"])
    check(parent is not None and parent["service"] == "gateway",
          f"its parent {b['parent_span_id']} is a gateway span of the trace"
          + (f" ({parent['kind']} {parent['name']})" if parent else " (not in the trace)"))
    up = chain(b)
    path = []
    for a in up:
        if a is gw:
            break
        path.append(a)
    check(gw in up and all(a["service"] == "gateway" and a["kind"] != "server" for a in path),
          "its parent chain leads to the gateway server span through gateway spans only"
          + ("" if gw not in up else " (directly)" if not path
             else " (via " + ", ".join(f"{a['kind']} {a['name']}" for a in path) + ")"))

stor = [s for s in trace if is_server(s, "storage")]
if check(len(stor) >= 1, f"storage server span(s) in the trace (got {len(stor)})") and biz:
    b = biz[0]
    led = [s for s in stor if b in chain(s)]
    check(len(led) >= 1,
          f"{len(led)} of {len(stor)} storage server span(s) have a parent chain leading to the business span")
    for s in stor:
        up = chain(s)
        direct = next((a for a in up if a["service"] != "storage"), None)
        check(b in up,
              f"storage {s['name']} [{s['span_id']}] <- "
              + " <- ".join(f"{a['service']} {a['kind']} {a['name']}" for a in up[:4])
              + (" ..." if len(up) > 4 else "")
              + ("" if b in up else f" (parent {s['parent_span_id']} unresolved)"))

check(not orphans, f"every span of the trace is connected to its root ({len(orphans)} orphan(s))")
check(all(s["trace_id"] == tid for s in trace) and all(
          not (s["parent_span_id"] and any(o["span_id"] == s["parent_span_id"] and o["trace_id"] != tid for o in spans))
          for s in trace),
      "all spans of the trace share the trace id, and no parent lies in another trace")
servers = [s for s in trace if s["kind"] == "server"]
bad = [s for s in servers if s["attributes"].get("rpc.system") != "grpc" or not s["attributes"].get("rpc.method")]
check(not bad, f"rpc.system=grpc and rpc.method on all {len(servers)} server span(s)"
      + (": missing on " + ", ".join(f"{s['service']} {s['name']}" for s in bad) if bad else ""))
tenants = {s["service"]: s["attributes"].get("tenant") for s in servers if s["service"] in ("gateway", "business")}
check(tenants == {"gateway": "acme", "business": "acme"}, f"tenant=acme on the gateway and business spans (got {tenants})")
stores = [s for s in servers if s["service"] == "storage"]
check(stores and all(s["attributes"].get("shard") is not None and int(s["attributes"].get("raft.term", 0)) >= 1 for s in stores),
      "shard and raft.term on the storage spans (" + ", ".join(
          f"shard={s['attributes'].get('shard')} term={s['attributes'].get('raft.term')}" for s in stores) + ")")
check(gw["attributes"].get("rpc.grpc.status_code") == 0,
      f"the gateway span records rpc.grpc.status_code=0 (got {gw['attributes'].get('rpc.grpc.status_code')})")
sys.exit(1 if failures else 0)
PY
}

step "one Deposit through the gateway"
call out "${ACME[@]}" -d '{"request_id":"trace-c-1","account_id":"traced"}' "$GW" "$L/CreateAccount"
expect_eq ACCOUNT_STATUS_OPEN "$(json_field "$out" status)" "new account status"
before=$(deposit_ok_count)
[[ $before =~ ^[0-9]+$ ]] || { fail "cannot read $METRICS before the Deposit: $before"; before=0; }
call out "${ACME[@]}" -d '{"request_id":"trace-d-1","account_id":"traced","amount":"500"}' "$GW" "$L/Deposit"
expect_eq 500 "$(json_field "$out" balance)" "balance after the Deposit"

step "the Deposit's trace reaches the sink (at most ${WAIT_SPANS}s)"
limit=$((SECONDS + WAIT_SPANS))
until analyze ready; do
  if ((SECONDS >= limit)); then
    fail "no complete trace (gateway, business and storage server spans, all parents present) within ${WAIT_SPANS}s"
    break
  fi
  pid_alive "$SINK_PID" || { cat "$SINK_LOG" >&2; die "trace-sink died"; }
  sleep 0.2
done
waited=$((WAIT_SPANS - (limit - SECONDS)))
pass "waited ${waited}s"

step "the trace: one id, a server span per service, parent links"
analyze check || FAILURES=$((FAILURES + 1))

step "gateway-1's /metrics counted the Deposit"
after=$(deposit_ok_count)
if [[ $after =~ ^[0-9]+$ ]] && ((after >= before + 1)); then
  pass "grpc_server_handled_total{grpc_method=\"Deposit\",grpc_code=\"OK\"}: $before -> $after"
else
  fail "grpc_server_handled_total{grpc_method=\"Deposit\",grpc_code=\"OK\"} did not move: $before -> $after"
fi

if ((FAILURES)); then
  printf '\nthe spans are kept in %s, the sink log in %s\n' "$SPANS" "$SINK_LOG" >&2
else
  rm -f "$SPANS" "$SINK_LOG" "$UP_LOG"
fi
finish
