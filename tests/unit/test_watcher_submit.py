"""`pbsvllm submit --wait` through the real job template and the real local
backend, with a stand-in launcher (tests/fakes/vllm.py --fake-startup-log) in place of
`vllm serve`: registered only once ready, key by name, entry removed once the
job ends, failures reported with their log lines. Real vLLM: tests/integration/test_e2e*.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pbsvllm.registry import open_registry
from tests.fakes.vllm import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 256, "max_position_embeddings": 512, "vocab_size": 1024,
    "torch_dtype": "bfloat16", "tie_word_embeddings": True,
}
KEY = "sk-test-" + "5" * 24


@pytest.fixture
def site(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY))
    (model / "model.safetensors").write_bytes(b"\0" * 4096)
    keyfile = tmp_path / "api_key"
    keyfile.write_text(KEY + "\n")
    os.chmod(keyfile, 0o600)
    cfg = tmp_path / "config.toml"
    launcher = f"{sys.executable} {os.path.join(ROOT, 'tests', 'fakes', 'vllm.py')} --fake-startup-log"
    cfg.write_text(
        f'profile = "fake"\nhome = {json.dumps(str(home))}\napi_key_file = {json.dumps(str(keyfile))}\n'
        f'[profiles.fake]\nbase = "local"\nrouter = "off"\nlauncher = {json.dumps(launcher)}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBSVLLM_") and k != "VLLM_API_KEY"}
    env.update(PBSVLLM_CONFIG=str(cfg), PBSVLLM_HOME=str(home), PYTHONPATH=ROOT)
    jobs = []
    yield {"home": home, "model": str(model), "env": env, "tmp": tmp_path, "jobs": jobs}
    for alias in jobs:
        subprocess.run([sys.executable, "-m", "pbsvllm", "cancel", alias, "--force"], env=env,
                       capture_output=True, timeout=60)


def pbsvllm(site, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], env=env or site["env"], capture_output=True,
                          text=True, timeout=timeout, cwd=str(site["tmp"]))


def test_submit_wait_registers_then_status_and_cleanup(site):
    reg = str(site["tmp"] / "endpoints.toml")
    site["jobs"].append("tiny")
    r = pbsvllm(site, "submit", site["model"], "--alias", "tiny", "--port", str(free_port()),
                "--wait", "--timeout", "90", "--registry", reg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ready at http://127.0.0.1:" in r.stdout and f"registered tiny in {reg}" in r.stdout
    assert "loading weights" in r.stdout
    (ep,) = open_registry(reg).lookup("tiny")
    assert ep.key == "VLLM_API_KEY" and ep.model == "tiny"
    assert KEY not in open(reg).read()
    # the key is in no script, log or record
    for root, _dirs, files in os.walk(site["home"]):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert KEY.encode() not in fh.read(), os.path.join(root, f)
    st = json.loads(pbsvllm(site, "status", "--json").stdout)
    assert st[0]["server_state"] == "ready" and st[0]["url"] == ep.url
    assert st[0]["registries"] == [f"tiny@{reg}"]
    # job ends: the next status removes the dead entry
    assert pbsvllm(site, "cancel", "tiny").returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = json.loads(pbsvllm(site, "status", "--json").stdout)
        if st[0]["state"] not in ("RUNNING", "COMPLETING"):
            break
        time.sleep(0.5)
    assert st[0]["server_state"] == "stopped"
    assert open_registry(reg).lookup("tiny") == []


def test_submit_wait_failure_is_reported_and_not_registered(site):
    reg = str(site["tmp"] / "endpoints.toml")
    site["jobs"].append("broken")
    env = dict(site["env"], FAKE_VLLM_FAIL="kv")
    r = pbsvllm(site, "submit", site["model"], "--alias", "broken", "--port", str(free_port()),
                "--wait", "--timeout", "90", "--registry", reg, env=env)
    assert r.returncode == 7, r.stdout + r.stderr
    assert "FAILED: kv_cache_too_small" in r.stdout
    assert "estimated maximum model length is 9920" in r.stdout
    assert ".log:" in r.stdout and "max seq len (262144)" in r.stdout  # the log line itself, with its number
    assert not os.path.exists(reg)
