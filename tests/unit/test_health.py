"""Readiness and /metrics probes against a real local HTTP server."""

from __future__ import annotations

import os

import pytest

from pbsvllm import health
from pbsvllm.errors import ConfigError
from tests.fakes.vllm import FakeVllm, free_port


def test_ready_needs_model_listed_and_one_token():
    with FakeVllm(["tiny"], api_key="s3cret") as fake:
        r = health.check_ready(fake.url, "tiny", "s3cret")
        assert r.ready and r.stage == "ready" and r.models == ("tiny",)
        posts = [q for q in fake.requests if q["method"] == "POST"]
        assert posts[0]["path"] == "/v1/completions"
        assert posts[0]["body"]["max_tokens"] == 1 and posts[0]["body"]["model"] == "tiny"
        assert all(q["auth"] == "Bearer s3cret" for q in fake.requests)


def test_models_200_but_completion_500_is_not_ready():
    with FakeVllm(["tiny"]) as fake:
        fake.completion_status = 500
        r = health.check_ready(fake.url, "tiny")
        assert not r.ready and r.stage == "completion_failed"
        assert "500" in r.detail and "completions" in r.detail


def test_wrong_served_name_is_model_missing():
    with FakeVllm(["someone-else"]) as fake:
        r = health.check_ready(fake.url, "tiny")
        assert not r.ready and r.stage == "model_missing"
        assert "someone-else" in r.detail
        assert not any(q["method"] == "POST" for q in fake.requests)


def test_missing_or_wrong_key_is_unauthorized_and_key_never_in_detail():
    with FakeVllm(["tiny"], api_key="s3cret") as fake:
        r = health.check_ready(fake.url, "tiny", None)
        assert r.stage == "unauthorized" and r.http_status == 401
        r = health.check_ready(fake.url, "tiny", "wrong-key-value")
        assert r.stage == "unauthorized"
        assert "wrong-key-value" not in repr(r.to_dict())


def test_nothing_listening_is_unreachable_quickly():
    url = f"http://127.0.0.1:{free_port()}/v1"
    r = health.check_ready(url, "tiny", timeout=1.0)
    assert not r.ready and r.stage == "unreachable" and "refused" in r.detail
    assert r.elapsed_s < 1.0


def test_models_error_status():
    with FakeVllm(["tiny"]) as fake:
        fake.models_status = 503
        r = health.check_ready(fake.url, "tiny")
        assert r.stage == "models_error" and r.http_status == 503


def test_check_many_in_order():
    with FakeVllm(["a"]) as f1, FakeVllm(["b"]) as f2:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        res = health.check_many([(f1.url, "a"), (dead, "x"), (f2.url, "a")])
        assert [r.stage for r in res] == ["ready", "unreachable", "model_missing"]


def test_http_proxy_is_not_used(monkeypatch):
    # a proxy that does not exist: the probe must go direct
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    with FakeVllm(["tiny"]) as fake:
        assert health.check_ready(fake.url, "tiny").ready


def test_urls():
    assert health.base_url("http://h:1") == "http://h:1/v1"
    assert health.base_url("http://h:1/v1/") == "http://h:1/v1"
    assert health.server_root("http://h:1/v1") == "http://h:1"


def test_metrics_sum_across_engines():
    with FakeVllm(["tiny"]) as fake:
        fake.running, fake.waiting = 3, 2
        m = health.scrape_metrics(fake.url)
        assert m["vllm:num_requests_running"] == 3.0
        load = health.load_from_metrics(m)
        assert load == {"running": 3.0, "waiting": 2.0, "kv_cache_usage_pct": 25.0}
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\nbad line\nvllm:x{a="}"} nan\n'
    assert health.load_from_metrics(health.parse_prometheus(text))["kv_cache_usage_pct"] == 50.0


def test_wait_for_drain_bounded():
    with FakeVllm(["tiny"]) as fake:
        fake.running = 1
        t = [0.0]

        def sleep(s):
            t[0] += s
            if t[0] >= 3:
                fake.running = 0

        ok, how = health.wait_for_drain(fake.url, timeout_s=10, poll_s=1, clock=lambda: t[0], sleep=sleep)
        assert ok and "drained" in how and t[0] == 3
        fake.running = 2
        t[0] = 0.0
        ok, how = health.wait_for_drain(fake.url, timeout_s=5, poll_s=1, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
        assert not ok and "running=2" in how
    ok, how = health.wait_for_drain(f"http://127.0.0.1:{free_port()}/v1", timeout_s=5)
    assert ok and "gone" in how


def test_resolve_api_key(tmp_path):
    f = tmp_path / "key"
    f.write_text("abc\n")
    os.chmod(f, 0o600)
    assert health.resolve_api_key(str(f), env={}) == "abc"
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        health.resolve_api_key(str(f), env={})
    with pytest.raises(ConfigError, match="does not exist"):
        health.resolve_api_key(str(tmp_path / "nope"), env={})
    assert health.resolve_api_key(None, "MYKEY", env={"MYKEY": "k2"}) == "k2"
    assert health.resolve_api_key(None, "MYKEY", env={}) is None
