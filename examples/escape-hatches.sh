#!/usr/bin/env bash
# One job's extra scheduler directives and environment variables
# (docs/templates.md, "Per-submit escape hatches"). Prints the script only.
#   bash examples/escape-hatches.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PBSVLLM_HOME="$(mktemp -d)/pbsvllm"
"$PY" -m pbsvllm submit Qwen/Qwen3-VL-2B-Instruct --alias qwen3-vl --profile polaris --dry-run \
  --directive "-l walltime=00:30:00" --directive "-m abe" \
  --env NCCL_DEBUG=INFO --env 'HF_HOME=/eagle/My Project/hf' \
  | grep -E '^#PBS|^export (NCCL_DEBUG|HF_HOME)'
# refused, with the reason (exit 10): a secret on the command line, an option pbsvllm owns
"$PY" -m pbsvllm submit Qwen/Qwen3-VL-2B-Instruct --alias q --profile polaris --dry-run --env HF_TOKEN=hf_x || true
"$PY" -m pbsvllm submit Qwen/Qwen3-VL-2B-Instruct --alias q --profile polaris --dry-run --directive "-o /tmp/x" || true
