#!/usr/bin/env bash
# Build (or reuse) a virtualenv holding one pinned PyPI package, under the
# test cache, stamped when complete; prints the venv's Python on stdout.
# Used by setup-router.sh and setup-verifiers.sh.
#
#   bash scripts/setup-pinned-venv.sh NAME PIN IMPORT_CHECK
#     NAME          folder under ${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}
#     PIN           pip requirement, e.g. vllm-router==0.1.17
#     IMPORT_CHECK  python -c code that must run after the install
#
# A folder without its stamp (.pbsvllm-ready, content = the recipe) is a
# half-built leftover: removed and rebuilt. A lock (flock) makes concurrent
# runs wait instead of racing.
set -euo pipefail
NAME="$1"; PIN="$2"; CHECK="$3"
CACHE="${PBSVLLM_TEST_CACHE:-$HOME/.cache/pbsvllm-test}"
VENV="$CACHE/$NAME"
RECIPE="recipe-1 $PIN"
mkdir -p "$CACHE"
exec 9>"$CACHE/.$NAME.lock"
flock 9
if [ -f "$VENV/.pbsvllm-ready" ] && [ "$(cat "$VENV/.pbsvllm-ready")" = "$RECIPE" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
rm -rf "$VENV"
echo "$NAME: building $VENV ($PIN; a few minutes the first time)" >&2
"${PBSVLLM_VENV_PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q "$PIN" >&2
"$VENV/bin/python" -c "$CHECK"
printf '%s' "$RECIPE" > "$VENV/.pbsvllm-ready"
echo "$VENV/bin/python"
