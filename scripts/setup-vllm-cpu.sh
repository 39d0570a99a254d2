#!/usr/bin/env bash
# Placeholder: the lifecycle issue builds the CPU vLLM environment and the tiny model here.
set -euo pipefail
echo "setup-vllm-cpu: not yet implemented"
