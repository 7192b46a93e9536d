#!/usr/bin/env bash
# Undo scripts/kind-up.sh: stop its port-forward and delete the kind cluster
# (with every volume in it). env: KIND_CLUSTER (default anatomy).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

CLUSTER="${KIND_CLUSTER:-anatomy}"
PF=kind-port-forward

# Only the process kind-up.sh recorded, and only if it still is that process.
if running "$PF"; then
  pid=$(<"$RUN_DIR/$PF.pid")
  say "==> stopping the port-forward (pid $pid)"
  kill "$pid" 2>/dev/null || true
fi
rm -f "$RUN_DIR/$PF.pid" "$RUN_DIR/kind-$CLUSTER-"*.image

command -v kind >/dev/null || die "kind is not installed (nothing to delete)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "==> deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
else
  say "==> no kind cluster $CLUSTER"
fi
