"""scale's pure selection: which jobs count, which go first."""

from __future__ import annotations

import pytest

from pbsvllm.errors import ConfigError
from pbsvllm.jobs import JobRecord
from pbsvllm.models import JobState, ServerState
from pbsvllm.scale import _with_job_id, live_jobs, plan_scale
from pbsvllm.scheduler.base import JobStatus


def rec(job_id: str, t: float, state: ServerState = ServerState.READY, **kw) -> JobRecord:
    return JobRecord(job_id=job_id, alias=kw.pop("alias", "tiny"), submitted_at=t, server_state=state, **kw)


def test_live_jobs_are_the_aliases_running_ones_oldest_first():
    recs = [rec("3", 3), rec("1", 1), rec("2", 2, ServerState.FAILED), rec("4", 4, cancelled_at=9.0),
            rec("5", 5, last_status=JobStatus(job_id="5", state=JobState.COMPLETED)), rec("6", 6, alias="other"), rec("7", 7, ServerState.STARTING)]
    assert [r.job_id for r in live_jobs(recs, "tiny")] == ["1", "3", "7"]


def test_scaling_up_submits_the_difference():
    assert plan_scale([rec("1", 1)], 3).submit == 2
    assert plan_scale([rec("1", 1)], 1) == plan_scale([rec("1", 1)], 1)
    assert plan_scale([rec("1", 1)], 1).submit == 0 and plan_scale([rec("1", 1)], 1).cancel == ()


def test_scaling_down_cancels_pending_newest_first_then_ready_oldest_first():
    live = [rec("1", 1), rec("2", 2), rec("3", 3, ServerState.STARTING), rec("4", 4, ServerState.NONE)]
    assert [r.job_id for r in plan_scale(live, 3).cancel] == ["4"]
    assert [r.job_id for r in plan_scale(live, 1).cancel] == ["4", "3", "1"]
    assert [r.job_id for r in plan_scale(live, 0).cancel] == ["4", "3", "1", "2"]


@pytest.mark.parametrize("n", [-1, 257])
def test_out_of_range_counts_are_refused(n):
    with pytest.raises(ConfigError):
        plan_scale([], n)


def test_a_resubmitted_job_gets_its_own_paths():
    assert _with_job_id("/h/logs/tiny.12.pbs.log", "12.pbs") == "/h/logs/tiny.{job_id}.log"
    assert _with_job_id("/h/run/x.json", "12.pbs") == "/h/run/x.json"
