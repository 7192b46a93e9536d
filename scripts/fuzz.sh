#!/usr/bin/env bash
# Fuzzing: every target of crates/fuzz-targets under libFuzzer (cargo-fuzz,
# coverage-guided, no sanitizer so that stable Rust builds it), each for a
# bounded time, starting from its committed corpus (fuzz/corpus/<target>).
#
#   scripts/fuzz.sh                     every target for 10 s (what test.sh runs)
#   scripts/fuzz.sh --seconds 300 http_request
#   scripts/fuzz.sh --keep              merge what the run found into the committed corpus
#                                       (only inputs that add coverage)
#   scripts/fuzz.sh --seed              (re)write the hand-made seeds into the corpus
#
# A finding stops the run: the input is saved under fuzz/artifacts/<target>/
# and the script prints how to replay it. Fix the bug, then copy the input
# into fuzz/corpus/<target>/: the corpus test (cargo test -p fuzz-targets)
# replays it from then on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

SECONDS_EACH=${ANATOMY_FUZZ_SECONDS:-10}
KEEP=0
targets=()
while (($#)); do
  case $1 in
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --seed)
      ANATOMY_WRITE_SEEDS=1 cargo test --release -p fuzz-targets --test corpus
      exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] || die "--seconds wants a whole number of seconds"

CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)

# -s none: no sanitizer (AddressSanitizer needs nightly); safe Rust needs
# none to find panics, overflows (debug assertions are on) and hangs.
# 16 codegen units: a build twice as fast for slightly slower runs.
FLAGS=(--fuzz-dir fuzz -s none --release --debug-assertions --codegen-units 16)
cargo fuzz build "${FLAGS[@]}"

for t in "${targets[@]}"; do
  work="fuzz/target/corpus/$t"
  mkdir -p "$work" "fuzz/corpus/$t"
  say "--- $t: ${SECONDS_EACH}s"
  # New inputs go into the first directory: the scratch one. The stack is
  # a tokio worker's (2 MiB), not the main thread's 8 MiB: recursion that
  # would overflow a server's thread must overflow here too.
  if ! (ulimit -s 2048 && cargo fuzz run "${FLAGS[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 2>"fuzz/target/$t.log"); then
    tail -n 40 "fuzz/target/$t.log" >&2
    say "FINDING in $t: the input is in fuzz/artifacts/$t/; replay it with" >&2
    say "  cargo fuzz run --fuzz-dir fuzz -s none $t fuzz/artifacts/$t/<file>" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "fuzz/target/$t.log" |
    sed 's/^stat::/    /' || true
  if ((KEEP)); then
    # Only the inputs that add coverage to the committed corpus.
    before=$(find "fuzz/corpus/$t" -type f | wc -l)
    cargo fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" "$work" -- -merge=1 2>"fuzz/target/$t.merge.log" ||
      { tail -n 20 "fuzz/target/$t.merge.log" >&2; die "merging into fuzz/corpus/$t failed"; }
    say "    corpus: $before -> $(find "fuzz/corpus/$t" -type f | wc -l) files"
  fi
done
say "fuzzing: ${#targets[@]} targets, ${SECONDS_EACH}s each, no finding"
