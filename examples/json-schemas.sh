#!/usr/bin/env bash
# Validate pbsvllm's JSON output against the schemas it ships (docs/json.md).
#   bash examples/json-schemas.sh        (needs: pip install jsonschema)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
check() {  # check SCHEMA < document
  "$PY" -c 'import json, sys, jsonschema
from pbsvllm.schemas import load_schema
jsonschema.validate(json.load(sys.stdin), load_schema(sys.argv[1]))
print("valid", sys.argv[1])' "$1"
}
"$PY" -m pbsvllm plan Qwen/Qwen3-VL-2B-Instruct --profile polaris --json | check plan
"$PY" -m pbsvllm doctor examples/doctor/qwen3-vl-tp4-eager.log --profile polaris --gpus 4 --json | check doctor
check bench < tests/data/bench/tiny-cpu-eager-vs-compiled.json
PBSVLLM_HOME="$(mktemp -d)" "$PY" -m pbsvllm status --json | check status
"$PY" -c 'from pbsvllm.schemas import schema_path; print(schema_path("status"))'
