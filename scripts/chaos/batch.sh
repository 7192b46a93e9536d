#!/usr/bin/env bash
# Many seeded chaos runs, one after another, and the table of their
# numbers for docs/correctness.md:
#
#   scripts/chaos/batch.sh [--workloads register,bank] [--seeds 1-10] [--duration 120s] [--no-build]
#
# Each run is scripts/chaos/run.sh (output in .chaos/<workload>-seed-<N>/);
# the table is printed at the end and written to .chaos/table.md. Exits
# non-zero if any run found an anomaly.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

WORKLOADS=register,bank
SEEDS=1-10
DURATION=120s
BUILD=1
while (($#)); do
  case $1 in
    --workloads) WORKLOADS=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
[[ $SEEDS =~ ^([0-9]+)-([0-9]+)$ ]] || die "--seeds is FROM-TO, got '$SEEDS'"
FROM=${BASH_REMATCH[1]} TO=${BASH_REMATCH[2]}
((BUILD)) && build_binaries

failed=0
reports=()
IFS=, read -ra workloads <<<"$WORKLOADS"
for w in "${workloads[@]}"; do
  for ((seed = FROM; seed <= TO; seed++)); do
    bash "$ROOT/scripts/chaos/run.sh" --no-build --workload "$w" --duration "$DURATION" --seed "$seed" || failed=$((failed + 1))
    reports+=("$ROOT/.chaos/$w-seed-$seed/report.json")
  done
done

python3 - "$DURATION" "${reports[@]}" >"$ROOT/.chaos/table.md" <<'PY'
import json, os, sys
duration, paths = sys.argv[1], sys.argv[2:]
kinds = ["kill", "pause", "partition", "torn"]
print("| workload | seed | s | ok | fail | info | kill | pause | partition | torn | windows | longest s | anomalies |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for path in paths:
    run = os.path.basename(os.path.dirname(path))
    workload, seed = run.rsplit("-seed-", 1)
    if not os.path.exists(path):
        print(f"| {workload} | {seed} | – | – | – | – | – | – | – | – | – | – | run failed |")
        continue
    r = json.load(open(path))
    by = {k: sum(n for name, n in r["faults"].items() if name.startswith(k) or (k == "torn" and name.startswith("torn"))) for k in kinds}
    print(f"| {workload} | {seed} | {r['seconds']:.0f} | {r['ok']} | {r['fail']} | {r['info']} | "
          f"{by['kill']} | {by['pause']} | {by['partition']} | {by['torn']} | {r['windows']} | "
          f"{r['longest_window_s']:.1f} | {0 if r['passed'] else 1} |")
PY
cat "$ROOT/.chaos/table.md"
((failed == 0)) || die "$failed run(s) found an anomaly or failed"
