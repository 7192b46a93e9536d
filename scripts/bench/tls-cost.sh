#!/usr/bin/env bash
# What mutual TLS costs: storage puts (and linearizable gets) on one shard of
# 3 replicas on loopback, with mTLS on every hop (the default) and with
# --insecure-plaintext, in the same run, alternating so that a drift of the
# machine hits both alike. Medians of --runs, min–max shown.
#
#   scripts/bench/tls-cost.sh [--duration 10s] [--concurrency 64] [--runs 3]
#                             [--keys 10000] [--out FILE]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DURATION=10s CONCURRENCY=64 RUNS=3 KEYS=10000
OUT="$ROOT/.anatomy-bench-tls.jsonl"
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
rm -f "$OUT"

say "==> building (release)"
build_binaries
BENCH_DIR="$ROOT/.anatomy-bench-tls"
MAP="$BENCH_DIR/shard-map.toml"

# up MODE: a fresh 1x3 storage cluster, mTLS or plaintext.
up() {
  local plain=false
  [[ $1 == plaintext ]] && plain=true
  ANATOMY_DIR="$BENCH_DIR" "$ROOT/scripts/down.sh" --wipe >/dev/null
  ANATOMY_DIR="$BENCH_DIR" ANATOMY_INSECURE_PLAINTEXT=$plain "$ROOT/scripts/up.sh" --no-build \
    --storage-only --shards 1 --replicas 3 --port-offset 2000 >/dev/null
}
cleanup() { ANATOMY_DIR="$BENCH_DIR" "$ROOT/scripts/down.sh" --wipe >/dev/null 2>&1 || true; }
trap cleanup EXIT

for ((i = 1; i <= RUNS; i++)); do
  for mode in mtls plaintext; do
    up "$mode"
    plain=false
    [[ $mode == plaintext ]] && plain=true
    for op in put get; do
      keys=(--keys "$KEYS")
      [[ $op == put ]] && keys=(--preload "$KEYS")
      ANATOMY_INSECURE_PLAINTEXT=$plain "$BIN_DIR/loadgen" storage --shard-map "$MAP" --op "$op" \
        "${keys[@]}" --concurrency "$CONCURRENCY" --duration "$DURATION" \
        --label "$mode" --json "$OUT" >/dev/null 2>&1 || die "loadgen $op ($mode) failed"
    done
    say "  run $i/$RUNS: $mode done"
  done
done
cleanup

say "==> mTLS vs plaintext (c=$CONCURRENCY, $DURATION per run, medians of $RUNS, min-max)"
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault((r["op"], r["label"]), []).append(r)
def cell(rs, field, fmt):
    xs = [r[field] for r in rs]
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"
print("| op | mode | ops/s | p50 ms | p99 ms | runs |")
print("|---|---|---:|---:|---:|---:|")
for op in ("put", "get"):
    for mode in ("mtls", "plaintext"):
        rs = runs.get((op, mode), [])
        if rs:
            print(f"| {op} | {mode} | {cell(rs, 'throughput', '.0f')} | {cell(rs, 'p50_ms', '.2f')} | "
                  f"{cell(rs, 'p99_ms', '.2f')} | {len(rs)} |")
    m, p = runs.get((op, "mtls")), runs.get((op, "plaintext"))
    if m and p:
        ratio = statistics.median(r["throughput"] for r in m) / statistics.median(r["throughput"] for r in p)
        print(f"| {op} | mTLS / plaintext | {ratio:.2f}x | | | |")
PY
say "results: $OUT"
