"""A scheduler that says nothing never ends a live server (issue 11 class 1,
the status/watch side), through the real pieces: fake ``qstat`` executables
on PATH run by the real local transport, job records on disk, a JSON
registry file, and a live HTTP server standing in for vLLM.

For every kind of non-answer (empty document, ``{}``, "Unknown Job Id" rc
153 while the server still answers, unfamiliar letter, garbage, an outage,
a hang past the caller's timeout) ``pbsvllm status`` shows the job as
unknown (or keeps its cached state) and changes nothing: the record, its
saved server state and the registry entry stay, and ``watch`` still follows
the job afterwards. Positive evidence does end it: a finished state, or the
scheduler saying it does not know the id while the server is gone.
"""

from __future__ import annotations

import json
import os

import pytest

from pbsvllm.api import Client
from pbsvllm.config import resolve
from pbsvllm.jobs import JobRecord, JobStore, WatchState
from pbsvllm.models import JobState, Phase, ServerState
from pbsvllm.registry import open_registry
from pbsvllm.scheduler.base import JobStatus
from pbsvllm.watcher import watch_records
from tests.fakes.vllm import FakeVllm, free_port

JID = "4242.pbs01"
RUNNING = json.dumps({"Jobs": {JID: {"job_state": "R", "queue": "q", "exec_host": "n1/0"}}})

NON_ANSWERS = {
    "empty": [{"rc": 0, "out": ""}],
    "empty object": [{"rc": 0, "out": "{}"}],
    "no jobs": [{"rc": 0, "out": '{"Jobs": {}}'}],
    "unknown id, server alive": [{"rc": 153, "err": f"qstat: Unknown Job Id {JID}\n"}],
    "unfamiliar letter": [{"rc": 0, "out": json.dumps({"Jobs": {JID: {"job_state": "Z"}}})}],
    "garbage": [{"rc": 0, "out_hex": b"\x00\xffgarbage{{{".hex()}, {"rc": 0, "out": "nonsense\n"}],
    "outage": [{"rc": 1, "err": "pbs_iff: cannot connect to host\n"}],
    "latin-1": [{"rc": 0, "out_hex": RUNNING.replace('"q"', '"M\\u00fcller"').encode().replace(
        b"\\u00fc", "ü".encode("latin-1")).hex()}],
}


@pytest.fixture
def world(tmp_path, fake_sched):
    """A READY job with a live server and its registry entry."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    settings = resolve({"home": str(home), "profile": "local"}, {"PBSVLLM_CONFIG": os.devnull})
    server = FakeVllm(models=["svc"], port=free_port()).__enter__()
    reg_path = str(tmp_path / "endpoints.json")
    spec = f"json:{reg_path}"
    open_registry(reg_path).set_alias("svc", [])
    from pbsvllm.registry import Endpoint

    open_registry(reg_path).register(Endpoint("svc", "svc", server.url, "VLLM_API_KEY", job_id=JID))
    store = JobStore(str(home))
    store.save(JobRecord(job_id=JID, alias="svc", served_model_name="svc", scheduler="pbspro",
                         registries=[spec], server_state=ServerState.READY, url=server.url,
                         last_status=JobStatus(JID, JobState.RUNNING, raw_state="R"), last_status_at=1.0,
                         log_path=str(tmp_path / "svc.log"),
                         watch=WatchState(phase=Phase.READY, urls=[server.url], registered=[spec])))
    (tmp_path / "svc.log").write_text("")
    yield settings, store, server, reg_path
    server.__exit__(None, None, None)


def _entry(reg_path):
    return open_registry(reg_path).read().get("svc", [])


@pytest.mark.parametrize("case", sorted(NON_ANSWERS))
def test_status_on_a_non_answer_changes_nothing(world, fake_sched, case):
    settings, store, server, reg_path = world
    fake_sched.answer("qstat", *NON_ANSWERS[case])
    client = Client(settings, store)
    report = client.status()
    row = report.rows[0]
    assert row["state"] in ("UNKNOWN", "RUNNING"), row
    rec = store.get(JID)
    assert rec.server_state == ServerState.READY
    assert rec.last_state is JobState.RUNNING, "UNKNOWN is never cached over what was known"
    assert [e.url for e in _entry(reg_path)] == [server.url], report.notes
    # watch still follows it afterwards
    assert [r.job_id for r in client.pending(follow_ready=True)] == [JID]


def test_hanging_qstat_is_bounded_by_the_watch_timeout_and_changes_nothing(world, fake_sched):
    settings, store, server, reg_path = world
    fake_sched.answer("qstat", {"rc": 0, "out": "{}", "sleep": 20})
    import time

    t0 = time.monotonic()
    watch_records(settings, [store.get(JID)], store=store, timeout_s=2.0, follow_ready=True)
    assert time.monotonic() - t0 < 15
    assert store.get(JID).server_state == ServerState.READY
    assert [e.url for e in _entry(reg_path)] == [server.url]


@pytest.mark.parametrize("case", ["empty object", "unknown id, server alive", "unfamiliar letter", "outage"])
def test_watch_on_non_answers_keeps_following(world, fake_sched, case):
    settings, store, server, reg_path = world
    fake_sched.answer("qstat", *NON_ANSWERS[case])
    result = watch_records(settings, [store.get(JID)], store=store, timeout_s=3.0, follow_ready=True)
    assert result is not None
    assert store.get(JID).server_state == ServerState.READY
    assert [e.url for e in _entry(reg_path)] == [server.url]


def test_finished_state_ends_it_and_removes_the_entry(world, fake_sched):
    settings, store, server, reg_path = world
    fake_sched.answer("qstat", {"rc": 0, "out": json.dumps({"Jobs": {JID: {"job_state": "F", "Exit_status": 0}}})})
    Client(settings, store).status()
    assert store.get(JID).server_state == ServerState.STOPPED
    assert _entry(reg_path) == []


@pytest.mark.parametrize("how", ["status", "watch"])
def test_gone_and_server_dead_ends_it(world, fake_sched, how):
    settings, store, server, reg_path = world
    fake_sched.answer("qstat", {"rc": 153, "err": f"qstat: Unknown Job Id {JID}\n"})
    server.__exit__(None, None, None)  # the server is gone too: now the scheduler's word is believed
    if how == "status":
        Client(settings, store).status()
    else:
        watch_records(settings, [store.get(JID)], store=store, timeout_s=60.0, follow_ready=True)
    assert store.get(JID).server_state == ServerState.STOPPED
    assert _entry(reg_path) == []


def test_status_timeout_bounds_a_hanging_scheduler(world, fake_sched):
    """`pbsvllm status --timeout 2` with a qstat that hangs: back within the
    limit, the job at its cached state (marked *), nothing changed."""
    import subprocess
    import sys
    import time

    settings, store, server, reg_path = world
    fake_sched.answer("qstat", {"rc": 0, "out": "{}", "sleep": 30})
    env = dict(os.environ, PBSVLLM_HOME=settings.home, PBSVLLM_CONFIG=os.devnull)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pbsvllm", "status", "--timeout", "2"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert time.monotonic() - t0 < 20
    assert "Traceback" not in r.stderr and "could not refresh" in r.stderr
    assert "RUNNING" in r.stdout and "*" in r.stdout
    assert store.get(JID).server_state == ServerState.READY
    assert [e.url for e in _entry(reg_path)] == [server.url]
