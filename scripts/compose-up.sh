#!/usr/bin/env bash
# Starts Anatomy as separate hosts with Docker Compose: builds the binaries
# and images (scripts/images.sh), makes the certificates (a CA and one pair
# per identity, mounted read-only; see docs/security.md), `up -d`, waits
# until every container is healthy, and prints grpcurl commands to try.
#
# usage: scripts/compose-up.sh [--no-build] [--add-shard]
#   --add-shard  also shard 3 (deploy/compose/add-shard.yaml; certificates
#                for 4 shards). Implied once shard 3 has a volume in the
#                project, so a later run never drops it. On a running cluster
#                this recreates every container whose shard-map mount changes;
#                to add shard 3 without restarting anything, see
#                docs/deployment.md, "Adding a shard".
# env:   ANATOMY_GATEWAY_PORT (50051), ANATOMY_GATEWAY_HTTP_PORT (8080),
#        ANATOMY_COMPOSE_PROJECT (anatomy), ANATOMY_API_KEYS, OTEL_EXPORTER_OTLP_ENDPOINT
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD=(--with-tools)
ADD_SHARD=false
for arg in "$@"; do
  case $arg in
    --no-build) BUILD+=(--no-build) ;;
    --add-shard) ADD_SHARD=true ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $arg (see --help)" ;;
  esac
done

# Shard 3 exists (it was added, its data is in this volume): keep it in the
# project, or `up --remove-orphans` would remove its containers.
if [[ $ADD_SHARD == false ]] && [[ -n $(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
  --filter "label=com.docker.compose.volume=storage-s3-r1" 2>/dev/null) ]]; then
  say "==> shard 3 has a volume in '$COMPOSE_PROJECT': with deploy/compose/add-shard.yaml (--add-shard)"
  ADD_SHARD=true
fi
FILES=("$COMPOSE_FILE")
DC_FILES="-f deploy/compose/compose.yaml" # the same, as the commands printed below say it
if [[ $ADD_SHARD == true ]]; then
  FILES+=("$ROOT/deploy/compose/add-shard.yaml")
  DC_FILES+=" -f deploy/compose/add-shard.yaml"
  # lib.sh's compose with both files, for every call below (compose_wait_healthy's too).
  compose() {
    local f=() file
    for file in "${FILES[@]}"; do f+=(-f "$file"); done
    if docker compose version >/dev/null 2>&1; then
      docker compose -p "$COMPOSE_PROJECT" "${f[@]}" "$@"
    elif command -v docker-compose >/dev/null; then
      docker-compose -p "$COMPOSE_PROJECT" "${f[@]}" "$@"
    else
      die "neither 'docker compose' nor 'docker-compose' is installed"
    fi
  }
fi

bash "$ROOT/scripts/images.sh" "${BUILD[@]}"
say "==> certificates in $COMPOSE_CERTS (mounted from $ANATOMY_COMPOSE_TLS/<identity>)"
if [[ $ADD_SHARD == true ]]; then
  # The pairs of shard 3's replicas (storage-s3-r1..3) beside the others;
  # existing pairs and the CA are kept. compose_certs then exports them all.
  [[ -x $BIN_DIR/anatomy-certs ]] || die "$BIN_DIR/anatomy-certs is missing: cargo build --release -p anatomy-certs"
  "$BIN_DIR/anatomy-certs" --dir "$COMPOSE_CERTS" init --shards 4 --replicas 3 >/dev/null
fi
compose_certs
say "==> starting the compose project '$COMPOSE_PROJECT'"
compose up -d --remove-orphans
say "==> waiting until every container is healthy"
compose_wait_healthy "${ANATOMY_UP_TIMEOUT:-120}" || die "the cluster did not become healthy (see: docker-compose -p $COMPOSE_PROJECT $DC_FILES logs)"
compose ps

GW="127.0.0.1:${ANATOMY_GATEWAY_PORT:-50051}"
HTTP="127.0.0.1:${ANATOMY_GATEWAY_HTTP_PORT:-8080}"
AUTH="-H 'authorization: Bearer dev-key-acme'"
STORAGE=$(container_ip "$(compose ps -q storage-s0-r1)" storage)
shown() { case $1 in "$PWD"/*) echo "${1#"$PWD"/}" ;; *) echo "$1" ;; esac; }
C=$(shown "$COMPOSE_CERTS")
OPERATOR="-cacert $C/ca.pem -cert $C/operator.pem -key $C/operator.key -servername localhost"
cat <<EOT

Anatomy is up in containers. The first gateway is published on $GW (gRPC)
and $HTTP (HTTP/JSON). Try:

  grpcurl -plaintext $GW list
  grpcurl -plaintext $AUTH -d '{"request_id":"create-alice","account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/CreateAccount
  grpcurl -plaintext $AUTH -d '{"request_id":"dep-1","account_id":"alice","amount":"1000"}' $GW anatomy.gateway.v1.Ledger/Deposit
  grpcurl -plaintext $AUTH -d '{"account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/GetAccount
  curl -s -H 'authorization: Bearer dev-key-acme' http://$HTTP/v1/accounts/alice

Watch Raft (leader, term, commit index per shard), from the host through
storage-s0-r1's address on the project's storage network, as the operator
(internal ports are mutual TLS; the certificates name localhost):
  grpcurl $OPERATOR $STORAGE:50071 anatomy.storage.v1.Admin/ClusterStatus
  grpcurl $OPERATOR $STORAGE:50071 anatomy.storage.v1.Admin/ListShards   # the shards shard 0 lists

Load from inside the network, against both gateways:
  docker-compose -p $COMPOSE_PROJECT $DC_FILES --profile tools run --rm loadgen \\
    deposit --gateway gateway-1:50051,gateway-2:50051 --duration 10s

Stop: scripts/compose-down.sh   (--wipe also deletes the data volumes)
EOT
