"""Keep-alive with real processes: the local backend, the real vllm-router and
the supervisor as its own detached process, with stand-in servers (the real
vLLM hand-overs are in test_keepalive_vllm.py).

A job runs a stand-in OpenAI server on a port it picks at run time, writes
its server-info file and lives until its walltime. A steady client sends
requests through the alias's stable URL the whole time.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import List, Tuple

import pytest

from pbsvllm import router
from pbsvllm.jobs import JobStore
from pbsvllm.keepalive import daemon, service
from pbsvllm.keepalive.policy import EndCause
from pbsvllm.keepalive.state import ChainStore
from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
from pbsvllm.scheduler.local import LocalScheduler
from pbsvllm.transport.local import LocalTransport
from tests.paths import ROOT

SCRIPT = """#!/bin/bash
#PBS -N {alias}
#PBS -l walltime={walltime}
#PBS -j oe
#PBS -o {home}/logs/
set -euo pipefail
LOG="{home}/logs/{alias}.$PBS_JOBID.log"
INFO="{home}/run/$PBS_JOBID.server.json"
PORT=$({py} -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "starting on $PORT" >> "$LOG"
{startup}
cd {root}
{py} tests/fakes/vllm.py tiny --port "$PORT" >> "$LOG" 2>&1 &
SRV=$!
trap 'kill -TERM $SRV 2>/dev/null; wait $SRV; exit 143' TERM
for i in $(seq 100); do {py} -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$PORT" 2>/dev/null && break; sleep 0.1; done
{py} -c 'import json,os,sys; t=sys.argv[1]+".tmp"; json.dump({{"job_id": os.environ["PBS_JOBID"], "host": "127.0.0.1", "port": int(sys.argv[2]), "url": "http://127.0.0.1:%s/v1" % sys.argv[2], "pid": int(sys.argv[3])}}, open(t,"w")); os.replace(t, sys.argv[1])' "$INFO" "$PORT" "$SRV"
wait $SRV
"""


class SteadyClient(threading.Thread):
    """Completions through the alias's URL every ``interval`` seconds."""

    def __init__(self, url: str, interval: float = 0.1, key: str = "") -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url.rstrip("/") + "/completions", interval
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.ok = 0
        self._mark = 0
        self.failures: List[Tuple[float, str]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        body = json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 1}).encode()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self.stop_event.is_set():
            req = urllib.request.Request(self.url, data=body, headers=self.headers)
            try:
                with opener.open(req, timeout=10) as resp:
                    resp.read()
                    self.ok += 1
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append((time.time(), str(exc)))
            self.stop_event.wait(self.interval)

    def mark(self) -> None:
        self._mark = self.ok

    def ok_since_mark(self) -> int:
        return self.ok - self._mark

    def stop(self) -> None:
        self.stop_event.set()
        self.join(15)


@pytest.fixture
def ka_env(router_home, monkeypatch):
    home = router_home
    for d in ("run", "logs", "scripts"):
        os.makedirs(os.path.join(home, d), exist_ok=True)
    cfg = os.path.join(os.path.dirname(home), "config.toml")
    with open(cfg, "w") as fh:
        fh.write('profile = "local"\n')
    monkeypatch.setenv("PBSVLLM_HOME", home)
    monkeypatch.setenv("PBSVLLM_CONFIG", cfg)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    tr = LocalTransport()
    sched = LocalScheduler(tr, home=home, grace_s=2)
    yield home, tr, sched
    try:
        daemon.stop(home, "tiny")
    except Exception:  # noqa: BLE001 - cleanup
        pass
    for rec in JobStore(home).list():
        try:
            sched.cancel(rec.job_id, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def submit_first(home: str, tr: LocalTransport, sched: LocalScheduler, walltime: str, startup: str = "") -> str:
    body = SCRIPT.format(alias="tiny", walltime=walltime, home=home, py=shlex.quote(sys.executable),
                         root=shlex.quote(ROOT), startup=startup)
    job = SubmitJob(script_text=body, script_path=os.path.join(home, "scripts", "tiny.pbs"), alias="tiny",
                    model="/models/tiny", served_model_name="tiny",
                    log_path=os.path.join(home, "logs", "tiny.{job_id}.log"),
                    server_info_path=os.path.join(home, "run", "{job_id}.server.json"))
    rec = submit_job(SubmitTarget(home=home, scheduler="local", profile="local"), job, transport=tr, scheduler=sched,
                     store=JobStore(home))
    return rec.job_id


def wait_for(pred, timeout: float, what: str, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def handovers(home: str) -> int:
    st = ChainStore(home).load("tiny")
    return sum(1 for j in st.jobs if j.end_cause == EndCause.HANDED_OVER) if st else 0


@pytest.mark.router
def test_two_handovers_zero_failed_requests_and_supervisor_kill(ka_env):
    home, tr, sched = ka_env
    first = submit_first(home, tr, sched, walltime="00:00:30")
    router.ensure_running("tiny", home=home, model="tiny")
    url = router.url("tiny", home=home)
    summary = service.start("tiny", home=home, margin_s=8)
    assert summary["jobs"][0]["job_id"] == first
    wait_for(lambda: router.members("tiny", home=home), 60, "the first server to join")
    client = SteadyClient(url)
    client.start()
    try:
        wait_for(lambda: handovers(home) >= 1, 120, "the first hand-over")
        # kill -9 the supervisor: serving goes on; `keepalive status` revives it
        pid = ChainStore(home).load("tiny").supervisor_pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not daemon.is_running(ChainStore(home), "tiny"), 10, "the supervisor to die")
        rows = service.status("tiny", home=home)
        assert rows[0]["state"] == "running"
        wait_for(lambda: daemon.is_running(ChainStore(home), "tiny"), 10, "the supervisor to be revived")
        wait_for(lambda: handovers(home) >= 2, 150, "the second hand-over")
    finally:
        client.stop()
    assert client.ok > 50
    assert client.failures == [], client.failures[:5]
    st = ChainStore(home).load("tiny")
    assert not any(j.end_cause == EndCause.WALLTIME for j in st.jobs), [j.to_dict() for j in st.jobs]
    lead = service.status("tiny", home=home)[0]["lead_time"]
    assert "measured" in lead
    # stop with --cancel: every job of the chain ends, none left running
    service.stop("tiny", home=home, cancel=True)
    wait_for(lambda: all(s.state.is_terminal for s in sched.status([j.job_id for j in st.jobs]).values()),
             30, "every job of the chain to end")


@pytest.mark.router
def test_failing_start_stops_after_the_cap_without_a_job_storm(ka_env):
    home, tr, sched = ka_env
    submit_first(home, tr, sched, walltime="00:05:00", startup='echo "torch.OutOfMemoryError: CUDA out of memory" >> "$LOG"; exit 1')
    router.ensure_running("tiny", home=home, model="tiny")
    service.start("tiny", home=home, margin_s=5)
    st = wait_for(lambda: (lambda s: s if s and s.stopped else None)(ChainStore(home).load("tiny")), 120,
                  "the chain to stop")
    assert "failed the same way" in st.stop_reason and "oom" in st.stop_reason.lower(), st.stop_reason
    assert len(st.jobs) == 2
    assert len(JobStore(home).list()) == 2
    time.sleep(3)
    assert len(JobStore(home).list()) == 2  # nothing more submitted
    # a request to the alias gets the router's clear 503 naming it
    req = urllib.request.Request(router.url("tiny", home=home) + "/models")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5)
    assert err.value.code == 503 and "tiny" in err.value.read().decode()
