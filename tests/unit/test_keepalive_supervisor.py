"""The keep-alive supervisor against a scripted scheduler and servers (fake ports).

The policy is tested on its own; here the loop is: two hand-overs with the
alias never empty, recovery after a killed server, a failing start that
stops after the cap without a job storm, a silent scheduler that changes
nothing, and a supervisor "killed" between steps that the next one resumes.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence

import pytest

from pbsvllm.errors import SchedulerError
from pbsvllm.keepalive.policy import EndCause, KeepAliveSpec
from pbsvllm.keepalive.state import ChainJobState, ChainState, ChainStore
from pbsvllm.keepalive.supervisor import Supervisor, chain_summary
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import JobStatus


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeCluster:
    """Jobs start ``queue_s`` after submission, are ready ``ready_s`` after
    starting, and end at their walltime."""

    def __init__(self, clock: Clock, walltime: float = 600, queue_s: float = 10, ready_s: float = 60) -> None:
        self.clock, self.walltime, self.queue_s, self.ready_s = clock, walltime, queue_s, ready_s
        self.jobs: Dict[str, Dict] = {}
        self.ids = itertools.count(2)
        self.members: List[str] = []
        self.member_log: List[tuple] = []   # (t, members) after each change
        self.silent = False
        self.fail_start = False
        self.cancelled: List[str] = []

    def add(self, jid: str, submitted: float) -> None:
        self.jobs[jid] = {"submitted": submitted, "end": None, "cause": "", "fail": self.fail_start}

    def _state(self, jid: str) -> JobStatus:
        j, now = self.jobs[jid], self.clock()
        start = j["submitted"] + self.queue_s
        if j["end"] is None and now >= start + self.walltime:
            j["end"], j["cause"] = start + self.walltime, "walltime"
        if j["end"] is None and j["fail"] and now >= start + 5:
            j["end"], j["cause"] = start + 5, "exit 1"
        if j["end"] is not None:
            state = JobState.CANCELLED if j["cause"] == "cancelled" else JobState.FAILED
            return JobStatus(job_id=jid, state=state, exit_reason=j["cause"])
        if now < start:
            return JobStatus(job_id=jid, state=JobState.PENDING)
        return JobStatus(job_id=jid, state=JobState.RUNNING, walltime_limit_s=int(self.walltime),
                         walltime_used_s=int(now - start))

    # -- Ports
    def statuses(self, job_ids: Sequence[str]) -> Dict[str, JobStatus]:
        if self.silent:
            raise SchedulerError("qstat timed out")
        return {j: self._state(j) for j in job_ids if j in self.jobs}

    def server_url(self, job_id: str) -> Optional[str]:
        return f"http://h/{job_id}/v1" if self._state(job_id).state == JobState.RUNNING else None

    def is_ready(self, job_id: str, url: str) -> bool:
        j = self.jobs[job_id]
        return not j["fail"] and self.clock() >= j["submitted"] + self.queue_s + self.ready_s

    def submit_successor(self, template_job: str) -> str:
        jid = str(next(self.ids))
        self.add(jid, self.clock())
        return jid

    def _change(self) -> None:
        self.member_log.append((self.clock(), tuple(self.members)))

    def join(self, alias: str, url: str, job_id: str) -> None:
        self.members.append(url)
        self._change()

    def drain(self, alias: str, url: str) -> None:
        self.members.remove(url)
        self._change()

    def remove(self, alias: str, url: str) -> None:
        if url in self.members:
            self.members.remove(url)
            self._change()

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        j = self.jobs[job_id]
        if j["end"] is None:
            j["end"], j["cause"] = self.clock(), "cancelled"

    def failure_signature(self, job_id: str, status: JobStatus) -> str:
        return status.exit_reason

    def queue_waits(self) -> List[float]:
        return []


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    cluster = FakeCluster(clock)
    store = ChainStore(str(tmp_path))
    return clock, cluster, store


def start_chain(store, cluster, clock, **spec_kw):
    spec_kw.setdefault("margin_s", 30)
    spec_kw.setdefault("safety_factor", 1.5)
    cluster.add("1", clock())
    st = ChainState(spec=KeepAliveSpec(alias="tiny", **spec_kw), template_job="1",
                    jobs=[ChainJobState(job_id="1", submitted_at=clock())])
    store.save(st)
    return Supervisor(store, "tiny", cluster, clock=clock)


def run(sup, clock, until, dt=5.0):
    while clock.t < until:
        sup.step()
        clock.t += dt


def test_two_handovers_alias_never_empty(world):
    clock, cluster, store = world
    sup = start_chain(store, cluster, clock)
    t0 = clock.t
    run(sup, clock, t0 + 3 * 600)
    st = store.load("tiny")
    ended = [j for j in st.jobs if j.ended_at is not None]
    assert len([j for j in ended if j.end_cause == EndCause.HANDED_OVER]) >= 2
    # After the first join, the alias always had at least one member.
    first = next(i for i, (_, m) in enumerate(cluster.member_log) if m)
    assert all(m for _, m in cluster.member_log[first:])
    # Each successor joined before its predecessor was drained.
    assert st.consecutive_failures == 0
    assert not any(j.end_cause == EndCause.WALLTIME for j in st.jobs)
    summary = chain_summary(st, clock.t)
    assert summary["state"] == "running" and summary["lead_time_s"] > 0
    assert "p90 of" in summary["lead_time"]


def test_killed_server_is_replaced(world):
    clock, cluster, store = world
    sup = start_chain(store, cluster, clock)
    run(sup, clock, clock.t + 120)
    assert cluster.members == ["http://h/1/v1"]
    cluster.jobs["1"]["end"], cluster.jobs["1"]["cause"] = clock.t, "killed by SIGKILL"
    run(sup, clock, clock.t + 200)
    st = store.load("tiny")
    assert st.job("1").end_cause == EndCause.SERVER_DIED
    assert cluster.members == ["http://h/2/v1"]
    assert st.consecutive_failures == 0  # reset once the replacement was ready


def test_failing_start_stops_after_cap_no_storm(world):
    clock, cluster, store = world
    cluster.fail_start = True
    sup = start_chain(store, cluster, clock, backoff_base_s=10)
    run(sup, clock, clock.t + 2000)
    st = store.load("tiny")
    assert st.stopped and "failed the same way" in st.stop_reason and "exit 1" in st.stop_reason
    assert len(cluster.jobs) == 2  # the first job and one retry: no storm
    n = len(cluster.jobs)
    run(sup, clock, clock.t + 1000)
    assert len(cluster.jobs) == n


def test_silent_scheduler_changes_nothing(world):
    clock, cluster, store = world
    sup = start_chain(store, cluster, clock)
    run(sup, clock, clock.t + 120)
    cluster.silent = True
    before = len(cluster.jobs)
    run(sup, clock, clock.t + 2000)  # far past the walltime, scheduler silent all along
    st = store.load("tiny")
    assert len(cluster.jobs) == before and cluster.cancelled == []
    assert all(j.ended_at is None for j in st.jobs)
    assert cluster.members == ["http://h/1/v1"]


def test_supervisor_killed_between_steps_is_resumed(world):
    clock, cluster, store = world
    sup = start_chain(store, cluster, clock)
    t0 = clock.t
    run(sup, clock, t0 + 500)
    # "kill -9": a brand-new supervisor object, state only from disk
    sup2 = Supervisor(store, "tiny", cluster, clock=clock)
    run(sup2, clock, t0 + 1300)
    st = store.load("tiny")
    assert sum(1 for j in st.jobs if j.end_cause == EndCause.HANDED_OVER) >= 1
    assert len(st.jobs) == len(cluster.jobs)  # nothing submitted twice or lost


def test_until_ends_chain_cleanly(world):
    clock, cluster, store = world
    sup = start_chain(store, cluster, clock, until=clock.t + 300)
    run(sup, clock, clock.t + 400)
    st = store.load("tiny")
    assert st.stopped and "--until" in st.stop_reason
    assert cluster.members == []
    assert all(cluster.jobs[j]["end"] is not None for j in cluster.jobs)
    assert all(j.end_cause == EndCause.CHAIN_ENDED for j in st.jobs)


def test_handover_figures_have_overlap_and_no_gap(world):
    from pbsvllm.keepalive.state import handovers

    clock, cluster, store = world
    sup = start_chain(store, cluster, clock)
    run(sup, clock, clock.t + 3 * 600)
    figs = handovers(store.load("tiny"))
    assert len(figs) >= 2
    assert all(h.gap_s == 0 and h.overlap_s >= 0 for h in figs)
    assert all(h.successor_ready_at <= h.predecessor_drained_at for h in figs)
