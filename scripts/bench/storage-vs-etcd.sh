#!/usr/bin/env bash
# Anatomy storage vs etcd, same machine, same client, one after the other.
#
# Anatomy: one shard of 3 replicas on loopback (a 3-member Raft group, like
# etcd's cluster). etcd: 3 members of etcd 3.4 on loopback. The same
# loadgen writes 256-byte values to new keys (puts) and reads random
# existing keys linearizably (gets) at each concurrency, and appends one
# JSON line per run to the results file. Both fsync every acknowledged write.
#
#   scripts/bench/storage-vs-etcd.sh [--duration 10s] [--concurrency 1,16,64]
#                                    [--keys 10000] [--large 1000000] [--runs 3] [--out FILE]
#                                    [--only anatomy|etcd] [--append]
# --large N also measures puts and gets at c=64 with N keys preloaded.
# --runs N repeats every measurement N times; the summary shows medians.
# --only runs one system; with --append (keep what FILE holds) a later
# run of the other system completes the comparison, e.g. to measure
# Anatomy again after a change without preloading etcd once more.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DURATION=10s CONCURRENCY=1,16,64 KEYS=10000 LARGE=0 RUNS=1 ONLY="" APPEND=0
OUT="$ROOT/.anatomy-bench-results.jsonl"
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --large) LARGE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --append) APPEND=1; shift ;;
    *) die "unknown option $1" ;;
  esac
done
case $ONLY in "" | anatomy | etcd) ;; *) die "--only takes anatomy or etcd, not $ONLY" ;; esac
((APPEND)) || rm -f "$OUT"

say "==> building (release)"
build_binaries
LOADGEN="$BIN_DIR/loadgen"
BENCH_DIR="$ROOT/.anatomy-bench"
MAP="$BENCH_DIR/shard-map.toml"
ETCD="$ROOT/scripts/bench/etcd-cluster.sh"

anatomy_up() {
  ANATOMY_DIR="$BENCH_DIR" "$ROOT/scripts/down.sh" --wipe >/dev/null
  ANATOMY_DIR="$BENCH_DIR" "$ROOT/scripts/up.sh" --no-build --storage-only \
    --shards 1 --replicas 3 --port-offset 2000 >/dev/null
}
anatomy_down() { ANATOMY_DIR="$BENCH_DIR" "$ROOT/scripts/down.sh" --wipe >/dev/null; }
cleanup() { anatomy_down || true; "$ETCD" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

say "==> the disk's fsync floor (4 KiB write + fdatasync, 500 times)"
python3 - "$ROOT" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], ".fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
lat = []
for _ in range(500):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter(); os.fdatasync(fd); lat.append((time.perf_counter() - t) * 1000)
os.close(fd); os.unlink(path)
lat.sort()
print(f"fdatasync ms: p50 {lat[250]:.3f}  p99 {lat[495]:.3f}  max {lat[-1]:.3f}")
PY

run() { # system label op extra-args...
  local system=$1 label=$2 op=$3 i
  shift 3
  for ((i = 1; i <= RUNS; i++)); do
    "$LOADGEN" "$system" --op "$op" --duration "$DURATION" --label "$label" --json "$OUT" "$@" 2>/dev/null |
      if ((i == 1)); then cat; else tail -n +2; fi
    # Preload once: later runs reuse the keys.
    set -- "${@/--preload/--keys}"
  done
}

if [[ $ONLY != etcd ]]; then
  say "==> Anatomy storage: 1 shard x 3 replicas"
  anatomy_up
  run storage anatomy put --shard-map "$MAP" --preload "$KEYS" --concurrency "$CONCURRENCY"
  run storage anatomy get --shard-map "$MAP" --keys "$KEYS" --concurrency "$CONCURRENCY" | tail -n +2
  if ((LARGE)); then
    anatomy_down && anatomy_up
    run storage "anatomy-$LARGE" put --shard-map "$MAP" --preload "$LARGE" --concurrency 64
    run storage "anatomy-$LARGE" get --shard-map "$MAP" --keys "$LARGE" --concurrency 64 | tail -n +2
  fi
  anatomy_down
fi

if [[ $ONLY != anatomy ]]; then
  say "==> etcd: 3 members"
  "$ETCD" start
  EP=$("$ETCD" endpoints)
  run etcd etcd put --endpoints "$EP" --preload "$KEYS" --concurrency "$CONCURRENCY"
  run etcd etcd get --endpoints "$EP" --keys "$KEYS" --concurrency "$CONCURRENCY" | tail -n +2
  if ((LARGE)); then
    "$ETCD" stop >/dev/null && "$ETCD" start >/dev/null
    run etcd "etcd-$LARGE" put --endpoints "$EP" --preload "$LARGE" --concurrency 64
    run etcd "etcd-$LARGE" get --endpoints "$EP" --keys "$LARGE" --concurrency 64 | tail -n +2
  fi
  "$ETCD" stop
fi

say "==> Anatomy / etcd (medians of $RUNS runs, min-max)"
python3 - "$OUT" <<'PY'
import json, sys
import statistics
groups = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["label"].split("-")[0], r["label"].split("-")[1] if "-" in r["label"] else "", r["op"], r["mode"])
    groups.setdefault(key, []).append(r)
def cell(rs, field, fmt):
    xs = [r[field] for r in rs]
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"
def med(rs, field):
    return statistics.median(r[field] for r in rs)
print("| keys | op | mode | Anatomy ops/s | etcd ops/s | ratio | Anatomy p50 ms | etcd p50 ms | Anatomy p99 ms | etcd p99 ms | runs |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (sys_, size, op, mode), a in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], int(kv[0][3].split("=")[1]))):
    if sys_ != "anatomy":
        continue
    e = groups.get(("etcd", size, op, mode))
    if not e:
        continue
    print(f"| {size or 'small'} | {op} | {mode} | {cell(a, 'throughput', '.0f')} | {cell(e, 'throughput', '.0f')} | "
          f"{med(a, 'throughput') / max(med(e, 'throughput'), 1e-9):.2f}x | {cell(a, 'p50_ms', '.2f')} | {cell(e, 'p50_ms', '.2f')} | "
          f"{cell(a, 'p99_ms', '.2f')} | {cell(e, 'p99_ms', '.2f')} | {min(len(a), len(e))} |")
PY
say "results: $OUT"
