#!/usr/bin/env bash
# The seed's "Testing & Validation", with pbsvllm: on a login node, compare
# the server you run today with the one the planner proposes.
# (Not runnable here: it needs a PBS cluster; see examples/bench/local-cpu.sh
# for a run on this machine.)
set -euo pipefail

# 1. The current server is registered as qwen3-vl (TP=4, eager). Submit the
#    planner's layout next to it, under another alias, and follow it until
#    it is ready and registered:
pbsvllm submit Qwen/Qwen3-VL-2B-Instruct --alias qwen3-vl-optimized --profile polaris
pbsvllm watch qwen3-vl-optimized --registry ~/configs/endpoints.toml

# 2. Same seeded requests to both, at the concurrencies a vf-eval run uses
#    and above; ratios per figure (throughput >1 and latency <1 mean the
#    optimized server is faster):
pbsvllm bench qwen3-vl --vs qwen3-vl-optimized -n 200 -c 1,8,64 --input-len 512 --output-len 256

# 3. Keep the figures for later, for a notebook or a spreadsheet:
pbsvllm bench qwen3-vl --vs qwen3-vl-optimized -n 200 -c 1,8,64 --json > bench-qwen3-vl.json
pbsvllm bench qwen3-vl --vs qwen3-vl-optimized -n 200 -c 1,8,64 --csv > bench-qwen3-vl.csv

# 4. A URL directly (the key is read from $VLLM_API_KEY, or --api-key-env NAME):
pbsvllm bench http://x3006c0s13b1n0:8005/v1 --model qwen3-vl -c 8 --prompts my-eval-prompts.jsonl

# 5. Once convinced, point the alias at the new server and end the old one:
pbsvllm swap-endpoint qwen3-vl --to qwen3-vl-optimized --cancel-old
