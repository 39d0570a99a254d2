"""Property-based state test (issue 11): random sequences of scheduler answers
(silence, garbage, outages, unfamiliar letters, "unknown id" while the
server lives), server answers (ready, 500s, wrong key) and concurrent CLI
operations (status in two threads at once, watch, swap-endpoint) never end
a live server, never lose a record or a registry entry, never crash.

Everything is real but the scheduler: fake ``qstat`` executables through the
real local transport, records and registries on disk, a live HTTP server.
The server stays alive throughout, so no answer may end it: the only
truthful evidence of an end (a finished state, or "unknown id" with the
server gone) never comes.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from pbsvllm.api import Client
from pbsvllm.config import resolve
from pbsvllm.errors import PbsvllmError
from pbsvllm.jobs import JobRecord, JobStore, WatchState
from pbsvllm.models import JobState, Phase, ServerState
from pbsvllm.registry import Endpoint, open_registry
from pbsvllm.scheduler.base import JobStatus
from pbsvllm.watcher import watch_records
from tests.fakes.vllm import FakeVllm, free_port
from tests.plugins.fakesched import FakeScheduler

LIVE, PENDING = "100.pbs01", "101.pbs01"


def _doc(states):
    return json.dumps({"Jobs": {j: {"job_state": s, "queue": "q"} for j, s in states.items()}})


ANSWERS = {
    "running": {"rc": 0, "out": _doc({LIVE: "R", PENDING: "Q"})},
    "silence": {"rc": 0, "out": ""},
    "empty object": {"rc": 0, "out": "{}"},
    "only the other job": {"rc": 0, "out": _doc({PENDING: "Q"})},
    "garbage": {"rc": 0, "out_hex": b"\xff\x00{{not json".hex()},
    "outage": {"rc": 1, "err": "pbs_iff: cannot connect to host\n"},
    "unknown id while alive": {"rc": 153, "err": f"qstat: Unknown Job Id {LIVE}\nqstat: Unknown Job Id {PENDING}\n"},
    "unfamiliar letter": {"rc": 0, "out": _doc({LIVE: "Z", PENDING: "?"})},
    "latin-1": {"rc": 0, "out_hex": _doc({LIVE: "R", PENDING: "Q"}).replace('"q"', '"NAME"').encode().replace(
        b"NAME", "Ærø".encode("latin-1")).hex()},
}


@pytest.fixture(scope="module")
def world():
    root = tempfile.mkdtemp(prefix="pbsvllm-state-")
    fake = FakeScheduler(os.path.join(root, "fake"))
    old_path = os.environ["PATH"]
    os.environ["PATH"] = fake.bin + os.pathsep + old_path
    server = FakeVllm(models=["svc"], port=free_port()).__enter__()
    yield root, fake, server
    server.__exit__(None, None, None)
    os.environ["PATH"] = old_path


class TrustMachine(RuleBasedStateMachine):
    root = ""
    fake: FakeScheduler
    server: FakeVllm

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(dir=self.root)
        home = os.path.join(self.dir, "home")
        self.settings = resolve({"home": home, "profile": "local"}, {"PBSVLLM_CONFIG": os.devnull})
        self.store = JobStore(home)
        self.reg = os.path.join(self.dir, "endpoints.json")
        self.swap_reg = os.path.join(self.dir, "other.yaml")
        open_registry(self.reg).register(Endpoint("svc", "svc", self.server.url, "VLLM_API_KEY", job_id=LIVE))
        self.store.save(JobRecord(job_id=LIVE, alias="svc", served_model_name="svc", scheduler="pbspro",
                                  registries=[f"json:{self.reg}"], server_state=ServerState.READY,
                                  url=self.server.url, last_status=JobStatus(LIVE, JobState.RUNNING, raw_state="R"),
                                  watch=WatchState(phase=Phase.READY, urls=[self.server.url],
                                                   registered=[f"json:{self.reg}"])))
        self.store.save(JobRecord(job_id=PENDING, alias="later", scheduler="pbspro",
                                  last_status=JobStatus(PENDING, JobState.PENDING, raw_state="Q")))
        self.fake.answer("qstat", ANSWERS["running"])
        self.server.models_status = self.server.completion_status = 200
        self.swapped = False

    def _run(self, op) -> None:
        try:
            op()
        except PbsvllmError:
            pass  # one-line domain errors are allowed; anything else fails the test

    @rule(kind=st.sampled_from(sorted(ANSWERS)), repeat=st.booleans())
    def scheduler_answers(self, kind, repeat):
        self.fake.answer("qstat", *([ANSWERS[kind]] * (2 if repeat else 1)))

    @rule(models=st.sampled_from([200, 500, 401]), completion=st.sampled_from([200, 500]))
    def server_answers(self, models, completion):
        self.server.models_status, self.server.completion_status = models, completion

    @rule()
    def status(self):
        self._run(lambda: Client(self.settings, self.store).status())

    @rule()
    def two_status_at_once(self):
        errors = []

        def one():
            try:
                Client(self.settings, JobStore(self.settings.home)).status()
            except PbsvllmError:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors

    @rule()
    def watch(self):
        self._run(lambda: watch_records(self.settings, self.store.list(), store=self.store, timeout_s=1.5,
                                        follow_ready=True))

    @rule()
    def swap(self):
        def go():
            from pbsvllm.swap import swap_endpoint

            swap_endpoint(self.settings, "svc", LIVE, store=self.store, registries=[f"litellm:{self.swap_reg}"],
                          add=True)
            self.swapped = True

        self._run(go)

    @invariant()
    def records_are_never_lost(self):
        assert {r.job_id for r in self.store.list()} == {LIVE, PENDING}

    @invariant()
    def the_live_server_is_never_ended(self):
        rec = self.store.get(LIVE)
        assert rec.server_state == ServerState.READY, rec.server_state
        assert rec.last_state not in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.UNKNOWN)
        assert self.store.get(PENDING).last_state not in (JobState.COMPLETED, JobState.FAILED, JobState.UNKNOWN)

    @invariant()
    def registry_entries_are_never_lost(self):
        assert [e.url for e in open_registry(self.reg).read().get("svc", [])] == [self.server.url]
        if self.swapped:
            assert self.server.url in [e.url for e in open_registry(self.swap_reg).read().get("svc", [])]
            assert f"litellm:{self.swap_reg}" in self.store.get(LIVE).watch.registered or \
                self.swap_reg in self.store.get(LIVE).watch.registered


def test_random_answers_never_end_a_live_server(world):
    TrustMachine.root, TrustMachine.fake, TrustMachine.server = world
    run_state_machine_as_test(TrustMachine, settings=settings(
        max_examples=10, stateful_step_count=7, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
