"""The files in examples/registries/ are what the docs say they are."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pbsvllm.config import resolve
from pbsvllm.registry import Endpoint, open_registry
from tests.fakes.vllm import FakeVllm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EX = os.path.join(ROOT, "examples", "registries")


@pytest.mark.parametrize("name", ["endpoints.toml", "endpoints-inline.toml", "endpoints.py", "config.yaml", "endpoints.json"])
def test_example_registries_parse_and_update(tmp_path, name):
    path = str(tmp_path / name)
    shutil.copy(os.path.join(EX, name), path)
    reg = open_registry(path)
    entries = reg.read()
    assert entries["qwen3-vl"][0].url.startswith("http://x3006c0s13b1n0") and entries["qwen3-vl"][0].key == "VLLM_API_KEY"
    assert len(entries["qwen7b-pool"]) == 2
    reg.register(Endpoint("qwen3-vl", "qwen3-vl", "http://x3101c0s1b0n0:8005/v1", job_id="999.pbs"))
    after = reg.read()
    assert [e.url for e in after["qwen3-vl"]] == ["http://x3101c0s1b0n0:8005/v1"]
    assert after["qwen7b-pool"] == entries["qwen7b-pool"]


def test_example_config_resolves():
    s = resolve({}, env={"PBSVLLM_CONFIG": os.path.join(EX, "config.toml")})
    assert s.registries_for("other") == (os.path.expanduser("~/verifiers/configs/endpoints.toml"),)
    assert s.registries_for("qwen3-vl")[1] == "litellm:~/litellm/proxy-config.yml"
    assert open_registry("~/x.yml", "litellm").fmt == "litellm"


def test_example_client_follows_the_registry(tmp_path):
    reg = str(tmp_path / "endpoints.toml")
    with FakeVllm(["tiny"], api_key="k-123") as fake:
        open_registry(reg).register(Endpoint("tiny", "tiny", fake.url, "MY_KEY_VAR"))
        env = dict(os.environ, MY_KEY_VAR="k-123", PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, os.path.join(EX, "client.py"), reg, "tiny", "3"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["0 '!'", "1 '!'", "2 '!'"]
        assert all(r["auth"] == "Bearer k-123" for r in fake.requests)
