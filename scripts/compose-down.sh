#!/usr/bin/env bash
# Stops the Compose deployment. --wipe also removes its data volumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ARGS=(down --remove-orphans --timeout 20)
case ${1:-} in
  --wipe) ARGS+=(--volumes) ;;
  "") ;;
  -h | --help) sed -n '2p' "$0" | sed 's/^# //'; exit 0 ;;
  *) die "unknown option $1 (--wipe or nothing)" ;;
esac
compose "${ARGS[@]}"
