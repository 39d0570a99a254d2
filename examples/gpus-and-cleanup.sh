#!/usr/bin/env bash
# pbsvllm probe / cleanup, runnable anywhere: the GPU part reads a probe
# recorded on a real 4 x H200 node (on a GPU node, drop "--from $RAW").
#   bash examples/gpus-and-cleanup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=tests/data/gpu/h200x4.raw.json

# What the node has: GPUs, memory, compute capability, MIG, links, versions.
pbsvllm probe --from "$RAW"

# On a GPU node, save the raw answers once and re-read them anywhere:
#   pbsvllm probe --raw > node.json ; pbsvllm probe --from node.json --json

# Which physical GPUs does a PBS cgroup hook's UUID list name?
# (two UUIDs in reverse order: CUDA device 0 is physical GPU 3)
pbsvllm probe --from "$RAW" --json \
  --visible GPU-9a8ed216-3854-e861-579d-9a1df0118bfc,GPU-9ef1e9ee-4825-e660-4092-e3a950c2fa99 |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print([(v["ordinal"], v["index"]) for v in d["visible"]["devices"]])'

# The job script's pre-launch check: exit 8 and one line if the count is wrong.
CUDA_VISIBLE_DEVICES=GPU-9a8ed216-3854-e861-579d-9a1df0118bfc \
  pbsvllm probe --from "$RAW" --expect-gpus 2 || echo "(exit $? as expected: 1 GPU visible, 2 planned)"

# Plan from the node's GPUs (on the node: --probe; here: the saved probe).
pbsvllm plan meta-llama/Llama-3.1-70B-Instruct --profile pbspro --probe-file "$RAW" | head -4

# Leftover servers of this user started through pbsvllm on this node:
pbsvllm cleanup --dry-run       # list them (marker env / server-info pid+pgid)
# pbsvllm cleanup               # SIGTERM, 10 s grace, SIGKILL
# pbsvllm cleanup --job 1234.pbs01 --grace 30
