"""Fixtures for the real ``vllm-router`` (PyPI ``vllm-router``, installed by
``scripts/test.sh`` through ``pip install -e '.[router]'``).

* ``router_ready``  -> None; FAILS (never skips) when vllm-router is not
  importable or cannot start and answer ``/liveness`` here.
* ``router_home``   -> a fresh ``PBSVLLM_HOME`` for one test; every router
  started under it is stopped at the end of the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import pytest

SETUP_CMD = "bash scripts/test.sh (it runs pip install -e '.[test,router]')"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def router_ready() -> None:
    """Start the real vllm-router once, check it answers, stop it."""
    import importlib.util

    if importlib.util.find_spec("vllm_router") is None:
        pytest.fail(f"vllm-router is not installed in {sys.executable}; run `{SETUP_CMD}`")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vllm_router.launch_router", "--port", str(port),
                             "--prometheus-host", "127.0.0.1", "--prometheus-port", str(_free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"vllm-router exited with {proc.returncode} at start:\n{out[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail("vllm-router did not answer /liveness within 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def router_home(tmp_path: os.PathLike[str], router_ready: None) -> Iterator[str]:
    home = os.path.join(str(tmp_path), "home")
    os.makedirs(home, mode=0o700)
    yield home
    from pbsvllm import router

    for alias in router.aliases(home=home):
        try:
            router.stop(alias, home=home)
        except Exception:  # noqa: BLE001 - best effort cleanup, the test's own result stands
            pass
