#!/usr/bin/env bash
# Exit codes a script can branch on (the table: docs/exit-codes.md).
#   bash examples/exit-codes.sh
# Nothing is submitted: each command fails before the queue.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PBSVLLM_HOME="$(mktemp -d)/pbsvllm"
export PBSVLLM_CONFIG="$(mktemp -d)/config.toml"
: > "$PBSVLLM_CONFIG"
show() { "$PY" -m pbsvllm "$@" >/dev/null 2>&1; echo "exit $?  <- pbsvllm $*"; }
show plan --no-such-option                                    # 2: usage error (click)
show plan Qwen/Qwen3-8B --profile no-such-profile             # 10: ConfigError
show plan nobody/unknown-model --profile polaris              # 11: ModelFactsError
show plan meta-llama/Llama-3.1-70B-Instruct --profile polaris # 12: PlanError
show cancel no-such-alias                                     # 5: JobNotFoundError
