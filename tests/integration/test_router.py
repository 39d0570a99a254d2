"""The real vllm-router under pbsvllm's supervisor, with fake vLLM servers (fast).

Zero-failure scaling, cancel and swap against real vLLM servers:
tests/integration/test_router_vllm.py.
"""

from __future__ import annotations

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


def test_an_alias_without_servers_answers_503_naming_it(router_home):
    st = router.ensure_running("tiny", home=router_home, model="tiny")
    assert st.url.endswith("/v1") and st.port > 0
    for path, body in (("/completions", COMPLETION), ("/chat/completions", {"model": "tiny", "messages": []}),
                       ("/models", None)):
        status, data = post(st.url + path, body)
        assert status == 503, (path, data)
        assert "alias 'tiny' has no ready server" in data["error"]["message"]
    # the URL and port are kept: a second ensure_running is a no-op
    assert router.ensure_running("tiny", home=router_home).url == st.url


def test_members_join_drain_leave_and_the_key_passes_through(router_home):
    st = router.ensure_running("tiny", router.RouterSettings(policy="round_robin"), home=router_home, model="tiny")
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


def test_a_crashed_router_is_restarted_with_its_members(router_home):
    st = router.ensure_running("tiny", home=router_home, model="tiny")
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


def test_a_server_that_never_gets_healthy_is_refused_and_not_recorded(router_home):
    router.ensure_running("tiny", home=router_home)
    with FakeVllm(["tiny"]) as a:
        a.health_status = 500
        with pytest.raises(router.ServerError):
            router.add_member("tiny", a.url, home=router_home)
    assert router.members("tiny", home=router_home) == []
