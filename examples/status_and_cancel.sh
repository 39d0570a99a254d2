#!/usr/bin/env bash
# Submit a tiny PBS-style script through the embedded local backend (no
# scheduler needed), watch it in `pbsvllm status`, then cancel it.
#   bash examples/status_and_cancel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
case "$PY" in /*) ;; */*) PY="$(pwd)/$PY" ;; esac
export PBSVLLM_HOME="${PBSVLLM_HOME:-$(mktemp -d)/pbsvllm}"
work="$(mktemp -d)"
cat > "$work/sleeper.pbs" <<'JOB'
#!/bin/bash
#PBS -N sleeper
#PBS -l walltime=00:05:00
#PBS -j oe
echo "job $PBS_JOBID on $(cat "$PBS_NODEFILE") in $PBS_O_WORKDIR"
trap 'echo "got SIGTERM"; exit 143' TERM
sleep 300 & wait
JOB
# The library calls that `pbsvllm submit` makes after rendering the script
# (submitted from $work: like qsub, job output files land in the submit folder):
repo="$(pwd)"
cd "$work"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$work/sleeper.pbs" <<'PYCODE'
import sys, os
from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
home = os.environ["PBSVLLM_HOME"]
script = open(sys.argv[1]).read()
job = SubmitJob(alias="sleeper", model="none", served_model_name="sleeper", script_text=script,
                script_path=os.path.join(home, "scripts", "sleeper.pbs"))
rec = submit_job(SubmitTarget(home=home, scheduler="local"), job)
print("submitted", rec.job_id)
PYCODE
cd "$repo"
sleep 1
"$PY" -m pbsvllm status
"$PY" -m pbsvllm status sleeper --json
"$PY" -m pbsvllm cancel sleeper
sleep 1
"$PY" -m pbsvllm status --offline
"$PY" -m pbsvllm status --keep-ended --json   # leaves registry entries of ended jobs alone
"$PY" -m pbsvllm status
