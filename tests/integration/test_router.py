"""The real vllm-router under pbsvllm's supervisor, with fake vLLM servers (fast).

Zero-failure scaling, cancel and swap against real vLLM servers:
tests/integration/test_router_vllm.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Optional, Tuple

import psutil
import pytest

from pbsvllm import router
from pbsvllm.router.model import MemberState
from tests.fakes.vllm import FakeVllm

pytestmark = pytest.mark.router

COMPLETION = {"model": "tiny", "prompt": "x", "max_tokens": 1}


def post(url: str, body: Optional[dict] = None, key: Optional[str] = None) -> Tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_an_alias_without_servers_answers_503_naming_it(router_home, router_settings):
    st = router.ensure_running("tiny", router_settings, home=router_home, model="tiny")
    assert st.url.endswith("/v1") and st.port > 0
    for path, body in (("/completions", COMPLETION), ("/chat/completions", {"model": "tiny", "messages": []}),
                       ("/models", None)):
        status, data = post(st.url + path, body)
        assert status == 503, (path, data)
        assert "alias 'tiny' has no ready server" in data["error"]["message"]
    # the URL and port are kept: a second ensure_running is a no-op
    assert router.ensure_running("tiny", router_settings, home=router_home).url == st.url


def test_members_join_drain_leave_and_the_key_passes_through(router_home, router_settings):
    st = router.ensure_running("tiny", dataclasses.replace(router_settings, policy="round_robin"), home=router_home,
                               model="tiny")
    with FakeVllm(["tiny"], api_key="k-123") as a, FakeVllm(["tiny"], api_key="k-123") as b:
        router.add_member("tiny", a.url, job_id="1", home=router_home)
        router.add_member("tiny", b.url, job_id="2", home=router_home)
        assert [m.job_id for m in router.members("tiny", home=router_home)] == ["1", "2"]
        assert post(st.url + "/completions", COMPLETION)[0] == 401  # the router does not add a key
        for _ in range(6):
            assert post(st.url + "/completions", COMPLETION, key="k-123")[0] == 200
        assert len([r for r in a.requests if r["path"] == "/v1/completions"]) >= 1
        assert len([r for r in b.requests if r["path"] == "/v1/completions"]) >= 1
        drained, how = router.drain_member("tiny", a.url, 5, home=router_home)
        assert drained, how
        assert router.members("tiny", home=router_home)[0].state is MemberState.DRAINING
        before = len(a.requests)
        for _ in range(5):
            assert post(st.url + "/completions", COMPLETION, key="k-123")[0] == 200
        assert len(a.requests) == before  # nothing new goes to a draining server
        s = router.status("tiny", home=router_home)
        assert s.router_up and s.serving
        assert {m.member.job_id: (m.in_router, m.health) for m in s.members} == {"1": (False, "ok"), "2": (True, "ok")}
        assert router.remove_member("tiny", a.url, home=router_home)
        assert router.remove_member("tiny", b.url, home=router_home)
        assert not router.remove_member("tiny", b.url, home=router_home)
    assert post(st.url + "/completions", COMPLETION, key="k-123")[0] == 503


def test_a_crashed_router_is_restarted_with_its_members(router_home, router_settings):
    st = router.ensure_running("tiny", router_settings, home=router_home, model="tiny")
    with FakeVllm(["tiny"]) as a:
        router.add_member("tiny", a.url, job_id="1", home=router_home)
        sup = router.status("tiny", home=router_home).supervisor_pid
        assert sup
        children = psutil.Process(sup).children()
        assert len(children) == 1
        os.kill(children[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            try:
                status = post(st.url + "/completions", COMPLETION)[0]
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        assert router.status("tiny", home=router_home).supervisor_pid == sup
    assert router.stop("tiny", home=router_home)
    assert not psutil.pid_exists(sup) or psutil.Process(sup).status() == psutil.STATUS_ZOMBIE
    assert not router.stop("tiny", home=router_home)  # not running: nothing to stop


def test_a_server_that_never_gets_healthy_is_refused_and_not_recorded(router_home, router_settings):
    router.ensure_running("tiny", router_settings, home=router_home)
    with FakeVllm(["tiny"]) as a:
        a.health_status = 500
        with pytest.raises(router.ServerError):
            router.add_member("tiny", a.url, home=router_home)
    assert router.members("tiny", home=router_home) == []


def test_a_killed_server_costs_at_most_its_in_flight_requests(router_home, router_settings):
    """kill -9 of one of two servers: at most the requests in flight on it fail, then none."""
    import socket
    import subprocess
    import sys
    import threading

    from tests.paths import ROOT

    st = router.ensure_running("tiny", dataclasses.replace(router_settings, policy="round_robin"),
                               home=router_home, model="tiny")
    procs = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs.append((subprocess.Popen([sys.executable, "-m", "tests.fakes.vllm", "tiny", "--port", str(port)], cwd=ROOT),
                      f"http://127.0.0.1:{port}/v1"))
    try:
        for _proc, url in procs:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/health", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            router.add_member("tiny", url, home=router_home)
        results: list = []
        stop = threading.Event()
        threads = 2

        def run() -> None:
            while not stop.is_set():
                try:
                    results.append((time.monotonic(), post(st.url + "/completions", COMPLETION)[0]))
                except OSError:
                    results.append((time.monotonic(), 0))

        workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(procs[0][0].pid, signal.SIGKILL)
        time.sleep(3.0)
        stop.set()
        for w in workers:
            w.join(30)
        before = [s for t, s in results if t < killed_at]
        after = [s for t, s in results if t >= killed_at]
        assert before and all(s == 200 for s in before)
        failed = [s for s in after if s != 200]
        assert len(failed) <= threads, failed       # at most the requests in flight on the killed server
        assert len(after) > 20 and all(s == 200 for s in after[threads:]), after[:10]  # then none
    finally:
        for proc, _url in procs:
            proc.kill()
            proc.wait()


@pytest.mark.verifiers
def test_verifiers_loads_the_vf_config_and_gets_the_aliases_503_not_a_cloud_fallback(
        router_home, router_settings, verifiers_python, tmp_path):
    """The real verifiers 0.4 parses the config pbsvllm writes (its own vf-eval parsing);
    with no server behind the alias its client gets the router's 503 naming the alias."""
    from pbsvllm.registry import Endpoint, open_registry
    from tests.plugins.verifiers import run_vf_client

    st = router.ensure_running("tiny", router_settings, home=router_home, model="tiny")
    cfg = str(tmp_path / "tiny.vf.toml")
    open_registry(cfg).register(Endpoint(alias="tiny", model="tiny", url=st.url, key="VLLM_API_KEY"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "VLLM_API_KEY"))}
    out = run_vf_client(verifiers_python, cfg, dict(env, VLLM_API_KEY="k"))
    assert (out["model"], out["base_url"], out["api_key_var"]) == ("tiny", st.url, "VLLM_API_KEY")
    assert not out["reply"]["ok"]
    assert "503" in out["reply"]["error"] and "alias 'tiny'" in out["reply"]["error"], out["reply"]
    # the alias lost its entry: the file keeps the URL (verifiers' default is a cloud API)
    open_registry(cfg).unregister("tiny")
    out = run_vf_client(verifiers_python, cfg, env)
    assert out["base_url"] == st.url


def test_the_cli_shows_the_url_the_members_and_their_health(router_home, router_settings, tmp_path):
    """`pbsvllm url`, `router status`, `status`: what a user types, on the real router."""
    import subprocess
    import sys

    from tests.paths import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("PBSVLLM_")}
    env.update(PBSVLLM_HOME=router_home, PBSVLLM_ROUTER_PYTHON=router_settings.python,
               PBSVLLM_CONFIG=str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=120)

    out = cli("url", "tiny")
    assert out.returncode == 7 and "has no router yet" in out.stderr and "pbsvllm router start tiny" in out.stderr
    out = cli("router", "start", "tiny", "--model", "tiny")
    assert out.returncode == 0, out.stderr
    st = router.ensure_running("tiny", router_settings, home=router_home)
    with FakeVllm(["tiny"]) as a:
        router.add_member("tiny", a.url, job_id="7.pbs", home=router_home)
        out = cli("url", "tiny", "--json")
        assert json.loads(out.stdout) == {"url": st.url, "model": "tiny", "api_key_var": "VLLM_API_KEY",
                                          "alias": "tiny"}
        out = cli("router", "status", "tiny")
        assert out.returncode == 0 and st.url in out.stdout
        assert f"{a.url}  job 7.pbs  active, routed, health ok" in out.stdout, out.stdout
        out = cli("status")
        assert out.returncode == 0 and f"{a.url}  job 7.pbs  active, routed, health ok" in out.stdout, out.stdout
    out = cli("router", "stop", "tiny")
    assert out.returncode == 0 and "router stopped" in out.stdout
    out = cli("router", "status", "tiny")
    assert out.returncode == 7 and "router stopped" in out.stdout
