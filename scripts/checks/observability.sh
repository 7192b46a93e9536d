#!/usr/bin/env bash
# Checks the observability configuration (deploy/observability,
# k8s/overlays/observability): Prometheus configs and rules with promtool,
# the alert rules' unit tests, the Grafana dashboard, the OpenTelemetry
# Collector config, and the Kubernetes overlay rendered with kustomize.
# Installs promtool (Debian package `prometheus`) and PyYAML if missing.
# One line per check; exits non-zero if any failed. docs/observability.md#checks
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OBS=deploy/observability
PROM=$OBS/prometheus

passed=0 failed=0 skipped=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# check NAME CMD...: runs CMD quietly; prints its output only if it fails.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
    printf '%s\n' "$out" | sed 's/^/      /'
  fi
}
skip() {
  skipped=$((skipped + 1))
  printf 'skip  %s\n' "$*"
}

# --- tools -------------------------------------------------------------------
apt_install() {
  # Debian's packages may try to start their service (prometheus does):
  # forbid it for this install if nothing forbids it already.
  local policy=/usr/sbin/policy-rc.d added=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } ||
    rc=$?
  if ((added)); then rm -f "$policy"; fi
  return "$rc"
}
if ! command -v promtool >/dev/null; then
  printf 'installing promtool (Debian package prometheus)\n'
  apt_install prometheus || { printf 'error: cannot install promtool\n' >&2; exit 1; }
fi

PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import yaml' 2>/dev/null; then
    printf 'installing PyYAML into .venv\n'
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check pyyaml
  fi
  PY=.venv/bin/python
fi

KUSTOMIZE=()
if command -v kubectl >/dev/null; then
  KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null; then
  KUSTOMIZE=(kustomize build)
fi

# --- Prometheus --------------------------------------------------------------
check "promtool check config prometheus.yml (local cluster)" promtool check config "$PROM/prometheus.yml"
check "promtool check config prometheus-compose.yml" promtool check config "$PROM/prometheus-compose.yml"

# Debian's promtool is built without Kubernetes service discovery: then check
# the kubernetes_sd_configs part structurally and the rest with promtool.
k8s_config() {
  local out
  if out=$(promtool check config "$PROM/prometheus-k8s.yml" 2>&1); then return 0; fi
  if ! grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
    printf '%s\n' "$out"
    return 1
  fi
  "$PY" "$OBS/check.py" k8s-config "$TMP/prometheus-k8s.yml" &&
    promtool check config "$TMP/prometheus-k8s.yml"
}
check "promtool check config prometheus-k8s.yml" k8s_config

check "promtool check rules rules/*.yml" promtool check rules "$PROM"/rules/*.yml
check "promtool test rules tests/*.yml" promtool test rules "$PROM"/tests/*.yml
check "metric names in rules and dashboard are the contract's (metrics.txt)" "$PY" "$OBS/check.py" queries
check "alerts: severity, annotations, runbook anchors in docs/observability.md" "$PY" "$OBS/check.py" runbooks

# --- Grafana, OpenTelemetry Collector ----------------------------------------
check "grafana/anatomy.json and its provisioning" "$PY" "$OBS/check.py" dashboard
dashboard_promql() {
  "$PY" "$OBS/check.py" dashboard-rules "$TMP/dashboard-rules.yml" &&
    promtool check rules "$TMP/dashboard-rules.yml"
}
check "dashboard queries parse (promtool)" dashboard_promql
check "otel-collector.yaml structure" "$PY" "$OBS/check.py" collector
otelcol=""
for bin in otelcol-contrib otelcol; do
  if command -v "$bin" >/dev/null; then otelcol=$bin; break; fi
done
if [[ -n $otelcol ]]; then
  check "$otelcol validate otel-collector.yaml" "$otelcol" validate --config="$OBS/otel-collector.yaml"
else
  skip "otelcol validate (no otelcol binary: none in Debian or PyPI; the structural check above ran)"
fi

# --- Kubernetes overlay ------------------------------------------------------
render() { # render DIR OUT [--app]
  "${KUSTOMIZE[@]}" "$1" >"$2" && "$PY" "$OBS/check.py" manifests "$2" "${@:3}"
}
# The overlay with a stub in place of ../kind: one Deployment, one
# StatefulSet (in a copy of the tree, so nothing is written to this one).
render_with_stub() {
  local t=$TMP/tree
  mkdir -p "$t/k8s/overlays/kind" "$t/deploy"
  cp -r k8s/overlays/observability "$t/k8s/overlays/"
  cp -r "$OBS" "$t/deploy/"
  cat >"$t/k8s/overlays/kind/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: anatomy
resources: [stub.yaml]
EOF
  cat >"$t/k8s/overlays/kind/stub.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: gateway, labels: {app.kubernetes.io/name: gateway}}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: gateway}}
  template:
    metadata: {labels: {app.kubernetes.io/name: gateway, app.kubernetes.io/part-of: anatomy}}
    spec: {containers: [{name: gateway, image: "anatomy:dev", env: [{name: ANATOMY_X, value: "1"}]}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: storage-s0}
spec:
  serviceName: storage-s0
  selector: {matchLabels: {app.kubernetes.io/name: storage}}
  template:
    metadata: {labels: {app.kubernetes.io/name: storage, app.kubernetes.io/part-of: anatomy}}
    spec: {containers: [{name: storage, image: "anatomy:dev", env: []}]}
EOF
  render "$t/k8s/overlays/observability" "$TMP/stub.yaml" --app
}
if ((${#KUSTOMIZE[@]})); then
  check "kustomize k8s/overlays/observability/stack" render k8s/overlays/observability/stack "$TMP/stack.yaml"
  check "kustomize k8s/overlays/observability (stub ../kind)" render_with_stub
  if [[ -f k8s/overlays/kind/kustomization.yaml ]]; then
    check "kustomize k8s/overlays/observability (real ../kind)" render k8s/overlays/observability "$TMP/full.yaml" --app
  else
    skip "kustomize k8s/overlays/observability with the real ../kind (k8s/overlays/kind does not exist yet)"
  fi
else
  skip "kustomize renders (neither kubectl nor kustomize is installed)"
fi

printf 'observability: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
((failed == 0))
