#!/usr/bin/env bash
# The three ways `submit --wait` reports progress (docs/lifecycle.md, "Progress").
#   bash examples/progress.sh MODEL [PROFILE]
set -euo pipefail
MODEL="${1:?usage: progress.sh MODEL [PROFILE]}"
PROFILE="${2:-local}"

# 1. a terminal: one line redrawn in place (phases, shards, graph capture, elapsed)
pbsvllm submit "$MODEL" --alias p1 --profile "$PROFILE" --wait

# 2. a batch log: plain lines, a heartbeat every 30 s, no escape sequences
pbsvllm submit "$MODEL" --alias p2 --profile "$PROFILE" --wait > p2-progress.log 2>&1
cat p2-progress.log

# 3. a terminal without colour, or one that cannot redraw
NO_COLOR=1 pbsvllm watch p1
TERM=dumb pbsvllm watch p2
