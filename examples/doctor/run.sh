#!/usr/bin/env bash
# pbsvllm doctor on a vLLM 0.11 log of Qwen3-VL-2B served with TP=4, --enforce-eager,
# on 4 PCIe-only GPUs while an evaluation harness sent 8 requests at a time
# (the scenario of the hand-written review this command automates).
# Regenerates review.md, review.json and review.html next to this script.
set -euo pipefail
cd "$(dirname "$0")"
PBSVLLM=${PBSVLLM:-pbsvllm}

# terminal report (default)
$PBSVLLM doctor qwen3-vl-tp4-eager.log --profile polaris --gpus 4

# the same as a markdown review and as JSON
$PBSVLLM doctor qwen3-vl-tp4-eager.log --profile polaris --gpus 4 --format markdown > review.md
$PBSVLLM doctor qwen3-vl-tp4-eager.log --profile polaris --gpus 4 --format json > review.json

# one self-contained page (opens offline): timelines of KV use, running/waiting
# and tokens/s from the stats lines, the findings beside them (pip install 'pbsvllm[plot]')
$PBSVLLM doctor qwen3-vl-tp4-eager.log --profile polaris --gpus 4 --format html > review.html

# without a profile: the node is estimated from the log, and the report says so
$PBSVLLM doctor qwen3-vl-tp4-eager.log --format json | python3 -c \
  'import json,sys; d=json.load(sys.stdin); print(d["node"]["sources"])'

# a tracked server: its log, profile and model come from the job record
#   pbsvllm doctor qwen3-vl
