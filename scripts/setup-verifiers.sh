#!/usr/bin/env bash
# Build (or reuse) the real verifiers 0.4 package in its own virtualenv, for
# the tests that check that `vf-eval @ FILE` configs written by pbsvllm load
# through verifiers' own config parsing and reach a server through the router.
#
#   bash scripts/setup-verifiers.sh          # build (or reuse) and print where it is
#
# Layout (cache dir: ${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}):
#   verifiers-0.4.0/                 virtualenv with verifiers==0.4.0 (about 600 MB)
#   verifiers-0.4.0/.pbsvllm-ready   stamp, written last (its content = the recipe)
# A venv without its stamp is a half-built leftover: removed and rebuilt.
# A lock (flock) makes concurrent runs wait instead of racing.
set -euo pipefail

CACHE="${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}"
PIN="verifiers==0.4.0"
VENV="$CACHE/verifiers-0.4.0"
RECIPE="recipe-1 $PIN"
PY="${PBSVLLM_VERIFIERS_PYTHON:-python3}"

mkdir -p "$CACHE"
exec 9>"$CACHE/.verifiers.lock"
flock 9

if [ -f "$VENV/.pbsvllm-ready" ] && [ "$(cat "$VENV/.pbsvllm-ready")" = "$RECIPE" ] && [ -x "$VENV/bin/vf-eval" ]; then
  echo "verifiers: reusing $VENV"
  exit 0
fi
rm -rf "$VENV"
echo "verifiers: building $VENV ($PIN; a few minutes the first time)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q "$PIN"
"$VENV/bin/python" -c "import verifiers.v1.configs.client, verifiers.v1.clients.eval"
printf '%s' "$RECIPE" > "$VENV/.pbsvllm-ready"
echo "verifiers: ready in $VENV"
