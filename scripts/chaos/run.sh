#!/usr/bin/env bash
# The nemesis: starts a local cluster, runs a workload on it, and injects
# faults on a seeded schedule while it runs (see docs/correctness.md).
#
#   scripts/chaos/run.sh [--workload register|bank] [--faults kill,pause,partition,torn]
#                        [--duration 120s] [--seed N] [--out DIR] [--port-offset N] [--no-build]
#                        [--moves]
#
# register: `loadgen register` straight to storage, its history checked
#   for linearizability by `loadgen check`;
# bank: `loadgen bank` through the gateway, its invariants checked (money
#   conserved, none negative, nothing stuck, histories consistent).
# Faults: kill (kill -9 and restart), pause (SIGSTOP/SIGCONT), partition
# (a leader cut off from its followers while clients still reach it, a
# follower cut off, one replica of every shard cut off: the nemesis puts
# a proxy on every peer link), torn (kill -9, a half-written record
# appended to the log, restart). Leaders and followers both.
# --moves: meanwhile, the slots the workload's keys live in move from
# shard to shard again and again (scripts/reshard.sh), faults and all;
# moves.log says how many moves completed (at least one must).
#
# Writes to --out (default .chaos/<workload>-seed-<N>/): history.jsonl
# (register) or bank.json (bank), faults.jsonl, verdict.txt, report.md,
# chart.svg, and the cluster's logs. Exits non-zero on any anomaly.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

WORKLOAD=${ANATOMY_CHAOS_WORKLOAD:-register}
FAULTS=${ANATOMY_CHAOS_FAULTS:-kill,pause,partition,torn}
DURATION=${ANATOMY_CHAOS_DURATION:-120s}
SEED=${ANATOMY_CHAOS_SEED:-1}
OFFSET=${ANATOMY_CHAOS_PORT_OFFSET:-6500}
OUT=""
BUILD=1
MOVES=${ANATOMY_CHAOS_MOVES:-0}
usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --workload) WORKLOAD=$2; shift 2 ;;
    --faults) FAULTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --port-offset) OFFSET=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --moves) MOVES=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done
[[ $WORKLOAD == register || $WORKLOAD == bank ]] || die "--workload is register or bank, got '$WORKLOAD'"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a number, got '$SEED'"
case $DURATION in
  *m) SECS=$((${DURATION%m} * 60)) ;;
  *s) SECS=${DURATION%s} ;;
  *) SECS=$DURATION ;;
esac
if ! [[ $SECS =~ ^[0-9]+$ ]] || ((SECS == 0)); then die "--duration is like 120s or 2m, got '$DURATION'"; fi
OUT=${OUT:-$ROOT/.chaos/$WORKLOAD-seed-$SEED}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

export ANATOMY_DIR="$ROOT/.anatomy-chaos"
((BUILD)) && { say "==> building (release)"; build_binaries; }
for b in nemesis loadgen storage; do [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: run without --no-build"; done

NEMESIS_PID=""
stop_nemesis() {
  [[ -n $NEMESIS_PID ]] || return 0
  kill -TERM "$NEMESIS_PID" 2>/dev/null || true
  local rc=0
  wait "$NEMESIS_PID" || rc=$?
  NEMESIS_PID=""
  return "$rc"
}
cleanup() {
  stop_nemesis || true
  "$ROOT/scripts/down.sh" --wipe >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$OUT"
mkdir -p "$OUT"

say "==> $WORKLOAD under $FAULTS for $DURATION, seed $SEED (out: $OUT)"
UP_ARGS=(--no-build --port-offset "$OFFSET")
[[ $WORKLOAD == register ]] && UP_ARGS+=(--storage-only)
"$ROOT/scripts/up.sh" "${UP_ARGS[@]}" --layout-only >"$OUT/up.log" 2>&1 || { cat "$OUT/up.log"; die "up.sh --layout-only failed"; }

# The nemesis first: its links must listen before the replicas dial them.
"$BIN_DIR/nemesis" run --dir "$ANATOMY_DIR" --faults "$FAULTS" --duration "${SECS}s" \
  --seed "$SEED" --journal "$OUT/faults.jsonl" 2>"$OUT/nemesis.log" &
NEMESIS_PID=$!
for _ in $(seq 1 150); do
  [[ -f $ANATOMY_DIR/maps/ready ]] && break
  kill -0 "$NEMESIS_PID" 2>/dev/null || { cat "$OUT/nemesis.log"; die "the nemesis exited"; }
  sleep 0.2
done
[[ -f $ANATOMY_DIR/maps/ready ]] || die "the nemesis did not write its maps within 30 s"
"$ROOT/scripts/up.sh" "${UP_ARGS[@]}" >>"$OUT/up.log" 2>&1 || { cat "$OUT/up.log"; die "up.sh failed"; }

# The workload outlasts the faults: the nemesis's warm-up (3 s) before
# them, and 5 s after, in which the cluster must be whole again.
WORK_SECS=$((SECS + 8))
passed=1
PREFIX="register/chaos-$SEED-$$"

# mover UNTIL: moves the workload's slots around the shards until SECONDS
# reaches UNTIL, one reshard.sh call (bounded) per round; one line per
# round in moves.log. The slots: CRC-32 (zlib's) of each key's partition,
# mod 1024 — the register's 8 keys, or the bank's 20 accounts (tenant acme).
mover() {
  local until=$1 slots round=0 shards
  slots=$(python3 - "$WORKLOAD" "$PREFIX" <<'PY'
import sys, zlib
workload, prefix = sys.argv[1], sys.argv[2]
names = [f"{prefix}/k{i}" for i in range(8)] if workload == "register" else [f"acme/bank-{i}" for i in range(20)]
print(",".join(str(s) for s in sorted({zlib.crc32(n.encode()) % 1024 for n in names})))
PY
  )
  shards=$(grep -c '^\[\[shards\]\]' "$ANATOMY_DIR/shard-map.toml")
  while ((SECONDS < until)); do
    round=$((round + 1))
    if timeout 60 "$ROOT/scripts/reshard.sh" --move "$slots" --to $((round % shards)) --per-step 4 >>"$OUT/moves.out" 2>&1; then
      echo "round $round: slots $slots moved to shard $((round % shards))"
    else
      echo "round $round: FAILED moving to shard $((round % shards)) (see moves.out)"
    fi
  done >>"$OUT/moves.log"
}
MOVER_PID=""
if ((MOVES)); then
  mover $((SECONDS + WORK_SECS - 3)) &
  MOVER_PID=$!
fi

if [[ $WORKLOAD == register ]]; then
  "$BIN_DIR/loadgen" register --shard-map "$ANATOMY_DIR/shard-map.toml" --prefix "$PREFIX" \
    --duration "${WORK_SECS}s" --history "$OUT/history.jsonl" >"$OUT/workload.log" 2>&1 ||
    { passed=0; echo "loadgen register failed: see workload.log" >>"$OUT/verdict.txt"; }
  "$BIN_DIR/loadgen" check "$OUT/history.jsonl" >>"$OUT/verdict.txt" 2>&1 || passed=0
  REPORT_INPUT=(--history "$OUT/history.jsonl")
else
  # shellcheck disable=SC1091
  source "$ANATOMY_DIR/cluster.env"
  START=$("$BIN_DIR/nemesis" now)
  "$BIN_DIR/loadgen" bank --gateway "127.0.0.1:${GATEWAY_PORTS[0]}" --quiet \
    --duration "${WORK_SECS}s" --json "$OUT/bank.json" >"$OUT/verdict.txt" 2>&1 || passed=0
  REPORT_INPUT=(--series "$OUT/bank.json" --series-start "$START")
fi

if [[ -n $MOVER_PID ]]; then
  wait "$MOVER_PID" || true
  done_moves=$(grep -c 'moved to' "$OUT/moves.log" 2>/dev/null || true)
  failed_moves=$(grep -c 'FAILED' "$OUT/moves.log" 2>/dev/null || true)
  echo "slot moves during the run: ${done_moves:-0} completed, ${failed_moves:-0} failed (moves.log)" >>"$OUT/verdict.txt"
  if ((${done_moves:-0} == 0)); then
    passed=0
    echo "no slot move completed: the run did not test moves" >>"$OUT/verdict.txt"
  fi
fi

if ! stop_nemesis; then
  passed=0
  echo "the nemesis failed: see nemesis.log" >>"$OUT/verdict.txt"
fi
cp -r "$ANATOMY_DIR/logs" "$OUT/logs" 2>/dev/null || true
"$ROOT/scripts/down.sh" --wipe >/dev/null 2>&1 || true

PASSED_FLAG=()
((passed)) && PASSED_FLAG=(--passed)
"$BIN_DIR/nemesis" report "${REPORT_INPUT[@]}" --faults "$OUT/faults.jsonl" \
  --verdict "$OUT/verdict.txt" "${PASSED_FLAG[@]}" \
  --title "chaos: $WORKLOAD under $FAULTS, ${SECS}s, seed $SEED" \
  --out "$OUT/report.md" --chart "$OUT/chart.svg" || true
sed -n '3p' "$OUT/report.md" 2>/dev/null || true
if ((passed)); then
  say "no anomaly: $OUT/report.md"
else
  say "ANOMALY or failure: $OUT/report.md, $OUT/verdict.txt" >&2
  exit 1
fi
