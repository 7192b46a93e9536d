#!/usr/bin/env bash
# Starts Anatomy as separate hosts with Docker Compose: builds the binaries
# and images (scripts/images.sh), makes the certificates (a CA and one pair
# per identity, mounted read-only; see docs/security.md), `up -d`, waits
# until every container is healthy, and prints grpcurl commands to try.
#
# usage: scripts/compose-up.sh [--no-build]
# env:   ANATOMY_GATEWAY_PORT (50051), ANATOMY_GATEWAY_HTTP_PORT (8080),
#        ANATOMY_COMPOSE_PROJECT (anatomy), ANATOMY_API_KEYS, OTEL_EXPORTER_OTLP_ENDPOINT
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD=(--with-tools)
case ${1:-} in
  --no-build) BUILD+=(--no-build) ;;
  "") ;;
  -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option $1 (see --help)" ;;
esac

bash "$ROOT/scripts/images.sh" "${BUILD[@]}"
say "==> certificates in $COMPOSE_CERTS (mounted from $ANATOMY_COMPOSE_TLS/<identity>)"
compose_certs
say "==> starting the compose project '$COMPOSE_PROJECT'"
compose up -d --remove-orphans
say "==> waiting until every container is healthy"
compose_wait_healthy "${ANATOMY_UP_TIMEOUT:-120}" || die "the cluster did not become healthy (see: docker-compose -p $COMPOSE_PROJECT -f deploy/compose/compose.yaml logs)"
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

Load from inside the network, against both gateways:
  docker-compose -p $COMPOSE_PROJECT -f deploy/compose/compose.yaml --profile tools run --rm loadgen \\
    deposit --gateway gateway-1:50051,gateway-2:50051 --duration 10s

Stop: scripts/compose-down.sh   (--wipe also deletes the data volumes)
EOT
