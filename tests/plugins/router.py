"""Fixtures for the real ``vllm-router`` (PyPI ``vllm-router`` 0.1.17, a Rust
binary wheel), built in its own venv by ``bash scripts/setup-router.sh``
(``scripts/test.sh`` runs it). pbsvllm is pointed at it with the profile key
``router_python``, so the project's venv stays without the optional extra.

* ``router_python`` -> the venv's Python; FAILS (never skips) when the venv
  is missing or vllm-router cannot start and answer ``/liveness`` here.
* ``router_ready`` -> the same, under the name the first tests used.
* ``router_settings`` -> :class:`pbsvllm.router.RouterSettings` using it.
* ``router_home`` -> a fresh ``PBSVLLM_HOME`` for one test, with
  ``PBSVLLM_ROUTER_PYTHON`` set for the test (code that starts a router
  from the configured profile finds it); every router started under it is
  stopped at the end of the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from typing import Iterator

import pytest

SETUP_CMD = "bash scripts/setup-router.sh"


def cache_dir() -> str:
    return os.environ.get("PBSVLLM_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pbsvllm-test")


def locate_router_python() -> str:
    venv = os.path.join(cache_dir(), "vllm-router-0.1.17")
    if not os.path.isfile(os.path.join(venv, ".pbsvllm-ready")):
        raise RuntimeError(f"vllm-router is not built (no stamp in {venv}); run `{SETUP_CMD}`")
    return os.path.join(venv, "bin", "python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def router_python() -> str:
    """The Python of the router venv, after one real vllm-router answered /liveness."""
    try:
        python = locate_router_python()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    port = _free_port()
    proc = subprocess.Popen([python, "-m", "vllm_router.launch_router", "--port", str(port),
                             "--prometheus-port", str(_free_port())],
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
                        return python
            except OSError:
                time.sleep(0.2)
        pytest.fail("vllm-router did not answer /liveness within 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def router_ready(router_python: str) -> str:
    return router_python


@pytest.fixture
def router_settings(router_python: str):  # -> pbsvllm.router.RouterSettings
    from pbsvllm.router import RouterSettings

    return RouterSettings(python=router_python, health_check_interval_s=2)


@pytest.fixture
def router_home(tmp_path: os.PathLike[str], router_python: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    home = os.path.join(str(tmp_path), "home")
    os.makedirs(home, mode=0o700)
    monkeypatch.setenv("PBSVLLM_ROUTER_PYTHON", router_python)
    yield home
    from pbsvllm import router

    for alias in router.aliases(home=home):
        try:
            router.stop(alias, home=home)
        except Exception:  # noqa: BLE001 - best effort clean-up; the test's own result stands
            pass
