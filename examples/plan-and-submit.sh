#!/usr/bin/env bash
# Plan and render offline (no GPU, no scheduler, no network): the seed's model
# on a Polaris node, as a table, as JSON, and the PBS script it would submit.
#   bash examples/plan-and-submit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PBSVLLM=".venv/bin/pbsvllm"
[ -x "$PBSVLLM" ] || PBSVLLM="pbsvllm"
export PBSVLLM_CONFIG="${PBSVLLM_CONFIG:-/dev/null}"   # ignore your own config for this demo

"$PBSVLLM" profiles
"$PBSVLLM" plan Qwen/Qwen3-VL-2B-Instruct --profile polaris
"$PBSVLLM" plan Qwen/Qwen3-VL-2B-Instruct --profile polaris --json | head -40
"$PBSVLLM" submit Qwen/Qwen3-VL-2B-Instruct --alias qwen3-vl --profile polaris --dry-run
# A model that does not fit one node: the error lists the layouts that would.
"$PBSVLLM" plan meta-llama/Llama-3.1-70B-Instruct --profile polaris || true
"$PBSVLLM" plan meta-llama/Llama-3.1-70B-Instruct --profile polaris --nodes 2
