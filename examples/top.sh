#!/usr/bin/env bash
# pbsvllm top (docs/top.md): the live view, a snapshot, and the snapshot as JSON.
#   bash examples/top.sh
set -euo pipefail
# live, redrawn every 2 s; the scheduler asked every 15 s; q quits
if [ -t 1 ]; then pbsvllm top --interval 2 --status-every 15; fi
# one plain snapshot (rates over 1 s): for logs and scripts
pbsvllm top --once
# servers with requests waiting: a sign the batch is full
pbsvllm top --once --json | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    m = s["metrics"] or {}
    if (m.get("waiting") or 0) > 0:
        print(s["alias"], "has", m["waiting"], "waiting; KV", m["kv_cache_usage_pct"], "%")'
