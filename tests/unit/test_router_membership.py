"""The watcher's router seam: join only after the readiness check, registries get the
stable URL, leave when the job ends; a router that cannot be had falls back to direct."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import pytest

from pbsvllm.errors import ServerError
from pbsvllm.jobs import JobStore
from pbsvllm.models import JobState
from pbsvllm.registry import open_registry
from pbsvllm.transport.local import LocalTransport
from pbsvllm.watcher import JobProgress, Reporter, Watcher, run_watchers
from tests.fakes.vllm import FakeVllm
from tests.unit.test_watcher import (
    Timeline,
    TimelineScheduler,
    make_record,
    probe,
    st,
    write_info,
)

STABLE = "http://127.0.0.1:45555/v1"


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    for sub in ("run", "logs"):
        (h / sub).mkdir(parents=True)
    return h


class FakeMembership:
    def __init__(self, fail: bool = False) -> None:
        self.calls: List[Tuple[str, str, Tuple[str, ...]]] = []
        self.fail = fail

    def wants(self, alias: str) -> bool:
        return True

    def join(self, alias: str, model: str, key_env: str, urls: Sequence[str], job_id: str) -> str:
        if self.fail:
            raise ServerError("the router of 'tiny-a' did not come up")
        self.calls.append(("join", alias, tuple(urls)))
        return STABLE

    def leave(self, alias: str, urls: Sequence[str]) -> List[str]:
        self.calls.append(("leave", alias, tuple(urls)))
        return list(urls)


def watch(home, tmp_path, membership, end_at=None):
    reg = str(tmp_path / "endpoints.json")
    rec = make_record(home, registries=[reg])
    tl = Timeline()
    plan = [(0, st(rec.job_id, JobState.RUNNING))]
    if end_at:
        plan.append((end_at, st(rec.job_id, JobState.CANCELLED, exit_status=271)))
    sched = TimelineScheduler(tl, {rec.job_id: plan})
    store = JobStore(str(home))
    seen: List[object] = []
    with FakeVllm(["tiny"]) as fake:
        tl.at(1, lambda: write_info(rec, fake.port))
        tl.at(10, lambda: seen.append((list(membership.calls), open_registry(reg).lookup("tiny-a"))))
        w = Watcher(sched, LocalTransport(), probe=probe, clock=tl.clock, reporter=Reporter(),
                    save=lambda j: store.update(j.job_id, **j.saved_fields()), follow_ready=bool(end_at),
                    membership=membership)
        w.add(JobProgress.from_record(rec))
        assert run_watchers([w], timeout_s=120, clock=tl.clock, sleep=tl.sleep)
    return w, reg, seen, fake


def test_a_ready_server_joins_and_registries_hold_the_stable_url(home, tmp_path):
    m = FakeMembership()
    w, reg, seen, fake = watch(home, tmp_path, m)
    url = f"http://127.0.0.1:{fake.port}/v1"
    assert m.calls == [("join", "tiny-a", (url,))]
    # the readiness check (model listed, one-token completion) came before the join
    assert [r["path"] for r in fake.requests][:2] == ["/v1/models", "/v1/completions"]
    [ep] = open_registry(reg).lookup("tiny-a")
    assert ep.url == STABLE and ep.job_id is None
    assert any("joined the tiny-a router" in line for line in w.reporter.lines)


def test_the_job_ending_takes_it_out_and_keeps_the_entry(home, tmp_path):
    m = FakeMembership()
    w, reg, seen, fake = watch(home, tmp_path, m, end_at=30)
    url = f"http://127.0.0.1:{fake.port}/v1"
    assert m.calls == [("join", "tiny-a", (url,)), ("leave", "tiny-a", (url,))]
    assert open_registry(reg).lookup("tiny-a")[0].url == STABLE  # the router answers 503 naming the alias
    assert w.jobs[0].server_state == "stopped"


def test_no_router_to_be_had_registers_the_server_directly(home, tmp_path):
    w, reg, seen, fake = watch(home, tmp_path, FakeMembership(fail=True))
    [ep] = open_registry(reg).lookup("tiny-a")
    assert ep.url == f"http://127.0.0.1:{fake.port}/v1"
    assert "router: the router of 'tiny-a' did not come up" in w.jobs[0].failure_detail
