#!/usr/bin/env bash
# What the two extra hops cost: Deposit end to end (loadgen -> gateway ->
# business -> storage) against storage puts through the same shard map
# (loadgen -> storage), on one local cluster (3 shards x 3 replicas,
# 2 business, 2 gateways; mutual TLS on every internal hop), alternating
# run by run so that a drift of the machine hits both alike. Prints medians
# of --runs with min–max, and the CPU each process kind spent per operation
# (from /proc/PID/stat before and after each run). Deposits run twice per
# round: with business's optimistic reads (the default) and with
# ANATOMY_OPTIMISTIC_READS=false (every read linearizable), restarting the
# business replicas in between.
#
#   scripts/bench/deposit-vs-put.sh [--duration 10s] [--concurrency 1,64] [--runs 3] [--out FILE]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DURATION=10s CONCURRENCY=1,64 RUNS=3
OUT="$ROOT/.anatomy-bench-e2e.jsonl"
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
rm -f "$OUT"

say "==> building (release)"
build_binaries
BENCH_DIR="$ROOT/.anatomy-bench-e2e"
export ANATOMY_DIR="$BENCH_DIR"
cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
say "==> starting 3 shards x 3 replicas, 2 business, 2 gateways (port offset 2000)"
"$ROOT/scripts/up.sh" --no-build --port-offset 2000 >/dev/null
# shellcheck source=/dev/null
source "$BENCH_DIR/cluster.env"
GATEWAYS=$(printf '127.0.0.1:%s,' "${GATEWAY_PORTS[@]}")
GATEWAYS=${GATEWAYS%,}

# cpu_ticks KIND: CPU time (user + system, clock ticks) of every running
# process of that kind (storage, business, gateway).
cpu_ticks() {
  local total=0 f pid st
  for f in "$BENCH_DIR"/run/"$1"-*.pid; do
    pid=$(<"$f")
    read -r -a st < <(sed 's/^.*) //' "/proc/$pid/stat")
    total=$((total + st[11] + st[12]))
  done
  echo "$total"
}

# measure LABEL LOADGEN-ARGS...: one loadgen run; appends its JSON line with
# the CPU seconds each kind of process (and the loadgen) spent during it.
measure() {
  local label=$1 kind after
  shift
  declare -A before
  for kind in storage business gateway; do before[$kind]=$(cpu_ticks "$kind"); done
  local line
  line=$(python3 - "$BIN_DIR/loadgen" "$@" --label "$label" --duration "$DURATION" <<'PY'
import json, os, resource, subprocess, sys, tempfile
with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
    run = subprocess.run(sys.argv[1:] + ["--json", out.name], stdout=subprocess.DEVNULL)
    if run.returncode != 0:
        sys.exit(f"loadgen failed: {' '.join(sys.argv[1:])}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in open(out.name):
        r = json.loads(line)
        r["cpu_s"] = {"loadgen": usage.ru_utime + usage.ru_stime}
        print(json.dumps(r))
PY
  ) || die "loadgen $label failed"
  local hz cpu=""
  hz=$(getconf CLK_TCK)
  for kind in storage business gateway; do
    after=$(cpu_ticks "$kind")
    cpu+="\"$kind\": $(((after - before[$kind]) * 1000 / hz))e-3, "
  done
  # Each concurrency is one line; give each its share of the processes' CPU
  # only when the run measured a single concurrency (as here).
  python3 -c '
import json, sys
r = json.loads(sys.argv[1]); r["cpu_s"].update(json.loads("{" + sys.argv[2].rstrip(", ") + "}"))
print(json.dumps(r))' "$line" "$cpu" >>"$OUT"
}

# business_reads true|false: restarts the business replicas with
# ANATOMY_OPTIMISTIC_READS set so.
business_reads() {
  local f pid
  for f in "$BENCH_DIR"/run/business-*.pid; do
    pid=$(<"$f")
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.1; done
  done
  ANATOMY_OPTIMISTIC_READS=$1 "$ROOT/scripts/up.sh" --no-build --port-offset 2000 >/dev/null
}

IFS=, read -r -a LEVELS <<<"$CONCURRENCY"
for ((i = 1; i <= RUNS; i++)); do
  for c in "${LEVELS[@]}"; do
    measure put storage --shard-map "$BENCH_DIR/shard-map.toml" --tls-dir "$BENCH_DIR/tls" \
      --op put --concurrency "$c"
    measure deposit deposit --gateway "$GATEWAYS" --concurrency "$c"
    business_reads false
    measure deposit-linearizable deposit --gateway "$GATEWAYS" --concurrency "$c"
    business_reads true
    say "  run $i/$RUNS: c=$c done"
  done
done
cleanup

say "==> Deposit end to end vs storage put (medians of $RUNS runs of $DURATION, min-max)"
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault((r["mode"], r["label"]), []).append(r)
def cell(xs, fmt):
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"
kinds = ("loadgen", "gateway", "business", "storage")
print("| c | op | ops/s | p50 ms | p99 ms | CPU µs per op: " + " / ".join(kinds) + " | runs |")
print("|---|---|---:|---:|---:|---:|---:|")
for mode in sorted({m for m, _ in runs}, key=lambda m: int(m.split("=")[1])):
    for label in ("put", "deposit", "deposit-linearizable"):
        rs = runs.get((mode, label), [])
        if not rs:
            continue
        cpu = " / ".join(
            f"{statistics.median(r['cpu_s'].get(k, 0) * 1e6 / max(r['ok'], 1) for r in rs):.0f}" for k in kinds)
        print(f"| {mode[2:]} | {label} | {cell([r['throughput'] for r in rs], '.0f')} | "
              f"{cell([r['p50_ms'] for r in rs], '.2f')} | {cell([r['p99_ms'] for r in rs], '.2f')} | {cpu} | {len(rs)} |")
    p, d = runs.get((mode, "put")), runs.get((mode, "deposit"))
    if p and d:
        ratio = statistics.median(r["throughput"] for r in d) / statistics.median(r["throughput"] for r in p)
        extra = statistics.median(r["p50_ms"] for r in d) - statistics.median(r["p50_ms"] for r in p)
        print(f"| {mode[2:]} | deposit / put | {ratio:.2f}x | +{extra:.2f} | | | |")
PY
say "results: $OUT"
