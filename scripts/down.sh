#!/usr/bin/env bash
# Stops exactly the processes recorded in .anatomy/run/ (SIGTERM, then
# SIGKILL after a grace period). Data stays; --wipe also deletes it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WIPE=0
GRACE=${ANATOMY_DOWN_GRACE:-15}
while (($#)); do
  case $1 in
    --wipe) WIPE=1; shift ;;
    --dir) ANATOMY_DIR=$2; shift 2 ;;
    -h | --help) say "usage: scripts/down.sh [--wipe] [--dir DIR]   (grace: env ANATOMY_DOWN_GRACE, default 15s)"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
case "$ANATOMY_DIR" in /*) ;; *) ANATOMY_DIR="$PWD/$ANATOMY_DIR" ;; esac
RUN_DIR="$ANATOMY_DIR/run"

names=()
if [[ -d $RUN_DIR ]]; then
  for f in "$RUN_DIR"/*.pid; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .pid)
    if running "$name"; then
      names+=("$name")
      kill -TERM "$(<"$f")" 2>/dev/null || true
    else
      rm -f "$f"
    fi
  done
fi
((${#names[@]})) && say "stopping ${names[*]}"
limit=$((SECONDS + GRACE))
for name in "${names[@]}"; do
  while running "$name" && ((SECONDS < limit)); do sleep 0.1; done
  if running "$name"; then
    say "$name did not stop within ${GRACE}s: SIGKILL"
    kill -KILL "$(<"$RUN_DIR/$name.pid")" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$name.pid"
done
if ((WIPE)); then
  rm -rf "$ANATOMY_DIR"
  say "wiped $ANATOMY_DIR"
fi
say "down"
