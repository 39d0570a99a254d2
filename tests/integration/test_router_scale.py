"""`pbsvllm submit --wait`, `scale`, `cancel` and `url` through the CLI, the real job
template, the real local backend and the real vllm-router, with the stand-in launcher
(tests/fakes/vllm.py) in place of `vllm serve`: servers join the alias's router after
their readiness check, scale adds and removes whole jobs, a cancelled job leaves the
router before it is cancelled, and an alias with no server answers 503 naming itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from pbsvllm import router
from tests.paths import ROOT
from tests.unit.test_watcher_submit import KEY, TINY

pytestmark = pytest.mark.router


@pytest.fixture
def site(tmp_path, router_python):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY))
    (model / "model.safetensors").write_bytes(b"\0" * 4096)
    keyfile = tmp_path / "api_key"
    keyfile.write_text(KEY + "\n")
    os.chmod(keyfile, 0o600)
    reg = tmp_path / "endpoints.toml"
    launcher = f"{sys.executable} {os.path.join(ROOT, 'tests', 'fakes', 'vllm.py')} --fake-startup-log"
    (tmp_path / "config.toml").write_text(
        f'profile = "fake"\nhome = {json.dumps(str(home))}\napi_key_file = {json.dumps(str(keyfile))}\n'
        f'registries = [{json.dumps(str(reg))}]\n'
        f'[profiles.fake]\nbase = "local"\nlauncher = {json.dumps(launcher)}\nrouter = "on"\n'
        f'router_python = {json.dumps(router_python)}\nrouter_policy = "round_robin"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBSVLLM_") and k != "VLLM_API_KEY"}
    env.update(PBSVLLM_CONFIG=str(tmp_path / "config.toml"), PBSVLLM_HOME=str(home), PYTHONPATH=ROOT)
    yield {"home": str(home), "model": str(model), "env": env, "tmp": tmp_path, "reg": str(reg)}
    subprocess.run([sys.executable, "-m", "pbsvllm", "scale", "tiny", "0", "--drain-timeout", "5"], env=env,
                   capture_output=True, timeout=120, cwd=str(tmp_path))
    for alias in router.aliases(home=str(home)):
        router.stop(alias, home=str(home))


def cli(site, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], env=site["env"], capture_output=True, text=True,
                          timeout=timeout, cwd=str(site["tmp"]))


def ask(url):
    req = urllib.request.Request(url + "/completions", method="POST",
                                 data=json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 1}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def members(site):
    return sorted(m.job_id for m in router.members("tiny", home=site["home"]))


def test_submit_scale_cancel_through_the_router(site):
    r = cli(site, "submit", site["model"], "--alias", "tiny", "--wait", "--timeout", "120")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "joined the tiny router: clients use http://127.0.0.1:" in r.stdout
    url = cli(site, "url", "tiny").stdout.strip()
    assert url.endswith("/v1")
    from pbsvllm.registry import open_registry

    assert [e.url for e in open_registry(site["reg"]).lookup("tiny")] == [url]  # the stable URL, once
    assert ask(url)[0] == 200
    first = members(site)
    assert len(first) == 1

    r = cli(site, "scale", "tiny", "2", "--wait", "--timeout", "120")
    assert r.returncode == 0, r.stdout + r.stderr
    two = members(site)
    assert len(two) == 2 and first[0] in two
    assert "2 ready of 2 wanted" in r.stdout
    assert all(ask(url)[0] == 200 for _ in range(4))

    r = cli(site, "scale", "tiny", "1", "--drain-timeout", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert members(site) == [j for j in two if j != first[0]]  # the oldest ready job went
    assert f"cancelled {first[0]}" in r.stdout

    last = members(site)[0]
    r = cli(site, "cancel", last)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "out of the tiny router" in r.stdout and members(site) == []
    status, body = ask(url)
    assert status == 503 and "alias 'tiny' has no ready server" in body["error"]["message"]
    assert [e.url for e in open_registry(site["reg"]).lookup("tiny")] == [url]  # never deleted
