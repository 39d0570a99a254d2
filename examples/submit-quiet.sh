#!/usr/bin/env bash
# Scripting pbsvllm: the job id alone (submit --quiet), the exit status of
# --wait (0 ready and registered, 6 ready but not registered, 7 failed), and
# registering a server that is already up (watch ALIAS --registry FILE).
#   bash examples/submit-quiet.sh MODEL [PROFILE]
set -euo pipefail
MODEL="${1:?usage: submit-quiet.sh MODEL [PROFILE]}"
PROFILE="${2:-local}"
REG="${REG:-$HOME/configs/endpoints.toml}"

JOB=$(pbsvllm submit "$MODEL" --alias demo --profile "$PROFILE" --quiet)
echo "submitted $JOB"
pbsvllm status "$JOB"

# wait quietly; branch on the outcome
# (its own --port range: two jobs started in the same second from one --port can race for it)
if pbsvllm submit "$MODEL" --alias demo2 --profile "$PROFILE" --port 8100 --quiet --wait --timeout 1800 --registry "$REG"; then
  echo "demo2 is up and in $REG"
else
  case $? in
    6) echo "demo2 is up but NOT in $REG (see the line above)";;
    7) echo "demo2 failed or timed out: pbsvllm logs demo2";;
    *) echo "submit failed before the queue";;
  esac
fi

# the first server was never registered: do it now that it is ready
pbsvllm watch demo --timeout 1800
pbsvllm watch demo --registry "$REG"
