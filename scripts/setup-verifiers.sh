#!/usr/bin/env bash
# The real verifiers 0.4 package in its own venv, for the tests that check
# that the `vf-eval @ FILE` configs pbsvllm writes load through verifiers' own
# config parsing and reach a server through the router; prints that venv's
# Python. Cached: verifiers-0.4.0/ under the test cache (about 600 MB).
#
#   bash scripts/setup-verifiers.sh
set -euo pipefail
exec bash "$(dirname "$0")/setup-pinned-venv.sh" verifiers-0.4.0 "verifiers==0.4.0" \
  "import verifiers.v1.configs.client, verifiers.v1.clients.eval"
