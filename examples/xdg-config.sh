#!/usr/bin/env bash
# Where pbsvllm finds its config file (docs/config.md): $PBSVLLM_CONFIG, then
# $XDG_CONFIG_HOME/pbsvllm/config.toml (~/.config), then each
# $XDG_CONFIG_DIRS/pbsvllm/config.toml (/etc/xdg).
#   bash examples/xdg-config.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
unset PBSVLLM_CONFIG PBSVLLM_PROFILE
export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/config" XDG_CONFIG_DIRS="$tmp/site"
mkdir -p "$tmp/site/pbsvllm" "$tmp/config/pbsvllm"
printf 'profile = "sophia"\n' > "$tmp/site/pbsvllm/config.toml"
echo "site file only:"
"$PY" -m pbsvllm profiles --json | "$PY" -c "import json,sys; d=json.load(sys.stdin); print('  read', d['config_path'], '-> default profile', [p['name'] for p in d['profiles'] if p.get('default')])"
printf 'profile = "polaris"\n' > "$tmp/config/pbsvllm/config.toml"
echo "user file beside it (the user file wins, whole):"
"$PY" -m pbsvllm profiles --json | "$PY" -c "import json,sys; d=json.load(sys.stdin); print('  read', d['config_path'], '-> default profile', [p['name'] for p in d['profiles'] if p.get('default')])"
