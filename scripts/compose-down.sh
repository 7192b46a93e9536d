#!/usr/bin/env bash
# Stops the Compose deployment. --wipe also removes its data volumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ARGS=(down --remove-orphans --timeout 20)
WIPE=false
case ${1:-} in
  --wipe)
    ARGS+=(--volumes)
    WIPE=true
    ;;
  "") ;;
  -h | --help) sed -n '2p' "$0" | sed 's/^# //'; exit 0 ;;
  *) die "unknown option $1 (--wipe or nothing)" ;;
esac
# Shard 3's containers (deploy/compose/add-shard.yaml) go as orphans.
compose "${ARGS[@]}"
if [[ $WIPE == true ]]; then
  # Volumes compose.yaml does not name (shard 3's) too: a shard added later
  # must start empty, not from an earlier cluster's log.
  for vol in $(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT"); do
    docker volume rm "$vol" >/dev/null
  done
fi
