"""The real ``verifiers`` 0.4 package in its own venv, built by
``bash scripts/setup-verifiers.sh`` (``scripts/test.sh`` runs it).

* ``verifiers_python`` -> the venv's Python; FAILS (never skips) when the
  venv is missing or verifiers 0.4 cannot be imported there.
* ``run_vf_client(python, config)`` -> the JSON line of ``tests/vf_client.py``:
  the config parsed by verifiers' own ``vf-eval`` parsing, and one chat
  completion sent by verifiers' own eval client.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Dict

import pytest

from tests.paths import ROOT

SETUP_CMD = "bash scripts/setup-verifiers.sh"


def cache_dir() -> str:
    return os.environ.get("PBSVLLM_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pbsvllm-test")


@pytest.fixture(scope="session")
def verifiers_python() -> str:
    venv = os.path.join(cache_dir(), "verifiers-0.4.0")
    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(os.path.join(venv, ".pbsvllm-ready")):
        pytest.fail(f"verifiers 0.4 is not built (no stamp in {venv}); run `{SETUP_CMD}`")
    out = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('verifiers'))"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or not out.stdout.startswith("0.4."):
        pytest.fail(f"verifiers 0.4 does not import in {venv}: {out.stdout}{out.stderr[-1000:]}")
    return python


def run_vf_client(python: str, config: str, env: Dict[str, str]) -> Dict[str, Any]:
    out = subprocess.run([python, os.path.join(ROOT, "tests", "vf_client.py"), config], capture_output=True,
                         text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
