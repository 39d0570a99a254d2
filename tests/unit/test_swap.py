"""swap-endpoint: real local jobs, real registries, a real client loop."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from pbsvllm.errors import RegistryError, ServerError
from pbsvllm.jobs import JobStore
from pbsvllm.registry import Endpoint, open_registry
from pbsvllm.swap import swap_endpoint
from pbsvllm.watcher import watch_records
from tests.fakes.vllm import free_port
from tests.unit.test_watcher_local import env, submit  # noqa: F401  (fixture)


def _ready(env_, alias, registries=()):
    settings, home, tr, sched, started, tmp = env_
    rec = submit(env_, alias, port=free_port(), registries=registries)
    res = watch_records(settings, [rec], scheduler=sched, transport=tr, timeout_s=60)
    assert res.ok
    return JobStore(str(home)).get(rec.job_id)


def test_swap_under_load_zero_failed_requests(env):
    settings, home, tr, sched, started, tmp = env
    reg = str(tmp / "endpoints.toml")
    a = _ready(env, "svc", registries=[reg])
    b = _ready(env, "svc-next")
    assert open_registry(reg).lookup("svc")[0].url == a.url
    stop = threading.Event()
    results = {"ok": 0, "failed": [], "urls": set()}

    def client():
        while not stop.is_set():
            ep = open_registry(reg).lookup("svc")[0]  # re-read before each request
            body = json.dumps({"model": ep.model, "prompt": "hi", "max_tokens": 1}).encode()
            req = urllib.request.Request(ep.url + "/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    assert resp.status == 200
                results["ok"] += 1
                results["urls"].add(ep.url)
            except Exception as exc:  # counted, reported below
                results["failed"].append(f"{ep.url}: {exc!r}")

    th = threading.Thread(target=client)
    th.start()
    try:
        res = swap_endpoint(settings, "svc", b.job_id, store=JobStore(str(home)), cancel_old=True,
                            drain_timeout_s=10)
        assert sched.wait_gone(a.job_id, timeout=20)
        # keep the client going a little after the old server is gone
        threading.Event().wait(1.0)
    finally:
        stop.set()
        th.join(timeout=30)
    assert results["failed"] == []
    assert results["urls"] == {a.url, b.url} and results["ok"] > 20
    assert res.old_jobs[0]["job_id"] == a.job_id and res.old_jobs[0]["drained"] is True
    assert [e.url for e in open_registry(reg).lookup("svc")] == [b.url]
    # the target's record says where it is registered
    assert reg in JobStore(str(home)).get(b.job_id).watch.registered


def test_swap_refuses_a_target_that_is_not_ready(env, tmp_path):
    settings, home, tr, sched, started, tmp = env
    reg = str(tmp_path / "endpoints.toml")
    open_registry(reg).register(Endpoint("svc", "tiny", "http://old:1/v1"))
    before = open(reg).read()
    bad = submit(env, "broken", fail=True)
    store = JobStore(str(home))
    store.update(bad.job_id, url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ServerError, match="is not ready, so 'svc' was not moved"):
        swap_endpoint(settings, "svc", bad.job_id, store=store, registries=[reg])
    assert open(reg).read() == before


def test_swap_add_replica_and_missing_registry(env):
    settings, home, tr, sched, started, tmp = env
    reg = str(tmp / "config.yaml")
    a = _ready(env, "pool", registries=[reg])
    b = _ready(env, "pool-2")
    res = swap_endpoint(settings, "pool", b.job_id, store=JobStore(str(home)), add=True)
    assert res.added and res.old_jobs == []
    eps = open_registry(reg).lookup("pool")
    assert [(e.url, e.job_id) for e in eps] == [(a.url, a.job_id), (b.url, b.job_id)]
    with pytest.raises(RegistryError, match="no registry holds 'nobody'"):
        swap_endpoint(settings, "nobody", b.job_id, store=JobStore(str(home)))
