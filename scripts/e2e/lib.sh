#!/usr/bin/env bash
# Helpers for end-to-end tests that drive the system with the real grpcurl.
# shellcheck disable=SC2034
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

FAILURES=0
step() { printf '\n--- %s\n' "$*"; }
pass() { printf '  ok: %s\n' "$*"; }
fail() {
  printf '  FAIL: %s\n' "$*" >&2
  FAILURES=$((FAILURES + 1))
}

# call OUT_VAR ARGS...: runs grpcurl, storing stdout+stderr in OUT_VAR; never fails.
call() {
  local __out=$1
  shift
  printf -v "$__out" '%s' "$(grpcurl -plaintext "$@" 2>&1 || true)"
}

# operator ARGS...: grpcurl to an internal service (mutual TLS) as the
# operator, with the certificates of the cluster in $ANATOMY_DIR.
operator() {
  grpcurl -cacert "$ANATOMY_DIR/tls/ca.pem" -cert "$ANATOMY_DIR/tls/operator.pem" \
    -key "$ANATOMY_DIR/tls/operator.key" "$@"
}

# leader_of SHARD: the replica id of its leader, asked of any live replica
# of a local cluster of 3 replicas per shard on port offset $OFFSET; fails
# (prints nothing) if none answers.
leader_of() {
  local r out id
  for r in 1 2 3; do
    out=$(operator -max-time 2 "127.0.0.1:$((50071 + OFFSET + $1 * 3 + r - 1))" \
      anatomy.storage.v1.Admin/NodeStatus 2>/dev/null) || continue
    id=$(json_field "$out" leaderId)
    [[ -n $id && $id != 0 ]] && { echo "$id"; return; }
  done
  return 1
}

# json_field JSON NAME: prints a top-level field of grpcurl's JSON output.
json_field() {
  python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2], ""); print(v)' "$1" "$2" 2>/dev/null || true
}

# expect_code CODE OUTPUT WHAT: the call failed with gRPC code CODE.
expect_code() {
  if grep -q "Code: $1" <<<"$2"; then pass "$3 -> $1"; else fail "$3: expected $1, got: $2"; fi
}

# expect_eq WANT GOT WHAT
expect_eq() {
  if [[ $1 == "$2" ]]; then pass "$3 = $1"; else fail "$3: expected '$1', got '$2'"; fi
}

finish() {
  if ((FAILURES)); then
    printf '\n%s: %d check(s) FAILED\n' "$(basename "$0")" "$FAILURES" >&2
    exit 1
  fi
  printf '\n%s: all checks passed\n' "$(basename "$0")"
}
