#!/usr/bin/env bash
# Llama-3.1-70B on two Polaris nodes (TP=4 inside a node, PP=2 across nodes, Ray),
# offline: the plan, the site's node limits, and the job script `submit` would queue.
# On Polaris, drop --dry-run (and add -A <project> --wait). docs/multinode.md walks through it.
#   bash examples/multinode/polaris-70b.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PBSVLLM=".venv/bin/pbsvllm"
[ -x "$PBSVLLM" ] || PBSVLLM="pbsvllm"
export PBSVLLM_CONFIG="${PBSVLLM_CONFIG:-/dev/null}"   # ignore your own config for this demo
MODEL=meta-llama/Llama-3.1-70B-Instruct

"$PBSVLLM" plan "$MODEL" --profile polaris --nodes 2
# The debug queue takes 1-2 nodes: asking for 3 fails here, before anything is queued.
"$PBSVLLM" plan "$MODEL" --profile polaris --nodes 3 || echo "(refused, as expected)"
# The script: select=2 + place=scatter, Ray head here, a Ray worker on the other node via mpiexec
# bound to hsn0, a wait for 2 nodes x 4 GPUs, then vllm serve --distributed-executor-backend ray.
"$PBSVLLM" submit "$MODEL" --alias llama70b --profile polaris --nodes 2 --dry-run >/tmp/llama70b-2node.pbs
grep -E '^#PBS|NODE_LAUNCHER=|NODE_IFACE=|VLLM_ARGS\+=\(--(tensor|pipeline)|distributed-executor' /tmp/llama70b-2node.pbs
echo "full script: /tmp/llama70b-2node.pbs"
