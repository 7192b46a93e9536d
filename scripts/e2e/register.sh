#!/usr/bin/env bash
# End-to-end: storage is linearizable, checked from a recorded history.
#
# On a local storage cluster (3 shards x 3 replicas), `loadgen register`
# runs 10 clients that read, write and compare-and-set 8 contended keys
# straight through storage-client, recording every operation (Jepsen's
# history format). `loadgen check` must find the history linearizable
# (exit 0). The checker must also reject a doctored copy — one read
# changed to a value nobody wrote — naming the key (exit 1), and refuse a
# broken file (exit 2).
#
#   scripts/e2e/register.sh [--duration 12]   (env REGISTER_DURATION)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${REGISTER_DURATION:-12}
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

export ANATOMY_DIR="$ROOT/.anatomy-e2e-register"
OFFSET=8000
LOG="$ROOT/.e2e-register.log"
HISTORY="$ANATOMY_DIR/history.jsonl"
cleanup() { "$ROOT/scripts/down.sh" --wipe >/dev/null || true; }
trap cleanup EXIT
cleanup
"$ROOT/scripts/up.sh" --no-build --storage-only --port-offset "$OFFSET" >"$LOG" 2>&1 ||
  { cat "$LOG"; die "up.sh failed"; }

step "loadgen register: 10 clients, 8 keys, ${DURATION}s"
if "$BIN_DIR/loadgen" register --shard-map "$ANATOMY_DIR/shard-map.toml" \
  --duration "${DURATION}s" --history "$HISTORY"; then
  pass "recorded $(wc -l <"$HISTORY") events"
else
  fail "the register workload failed"
fi

# check_exit WANT WHAT FILE: loadgen check FILE exits with WANT.
check_exit() {
  local want=$1 what=$2 file=$3 rc=0
  "$BIN_DIR/loadgen" check "$file" >"$ANATOMY_DIR/check.out" 2>&1 || rc=$?
  sed 's/^/    /' "$ANATOMY_DIR/check.out" | head -20
  expect_eq "$want" "$rc" "$what: exit status"
}

step "loadgen check: the history is linearizable"
check_exit 0 "the recorded history" "$HISTORY"
# expect_output PATTERN WHAT: the last check printed a line matching PATTERN.
expect_output() {
  if grep -q -- "$1" "$ANATOMY_DIR/check.out"; then pass "$2"; else fail "$2: no '$1' in the output"; fi
}
expect_output '^linearizable: 8 keys' "all 8 keys decided"

step "a read doctored to a value nobody wrote is caught"
DOCTORED="$ANATOMY_DIR/doctored.jsonl"
KEY=$(python3 - "$HISTORY" "$DOCTORED" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
events = [json.loads(l) for l in lines]
# The last successful read that saw a value: make it see -1 instead.
i = max(i for i, e in enumerate(events)
        if e["type"] == "ok" and e["f"] == "read" and e["value"] is not None)
events[i]["value"] = -1
with open(sys.argv[2], "w") as out:
    out.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
print(events[i]["key"])
PY
)
check_exit 1 "the doctored history" "$DOCTORED"
expect_output "key \"$KEY\" is not linearizable" "the checker names key $KEY"
expect_output 'read -> -1' "the evidence shows the doctored read"

step "a broken history is refused"
BROKEN="$ANATOMY_DIR/broken.jsonl"
{ head -n 3 "$HISTORY"; echo '{"process":1,"type":"ok"'; } >"$BROKEN"
check_exit 2 "a truncated line" "$BROKEN"

rm -f "$LOG"
finish
