#!/usr/bin/env bash
# vLLM's router (PyPI vllm-router, a Rust binary wheel) in its own venv, for
# the router tests, benchmarks and examples; prints that venv's Python. The
# suite points pbsvllm at it with the profile key router_python
# (PBSVLLM_ROUTER_PYTHON), so the project's own venv stays without the
# optional extra and the other tests see pbsvllm as a user without
# `pip install 'pbsvllm[router]'` does. Cached: vllm-router-0.1.17/ under the test cache.
#
#   bash scripts/setup-router.sh
set -euo pipefail
exec bash "$(dirname "$0")/setup-pinned-venv.sh" vllm-router-0.1.17 "vllm-router==0.1.17" \
  "import vllm_router.launch_router"
