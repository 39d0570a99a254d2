"""status rows (pure) and the refresh that feeds them: one scheduler call per
(host, scheduler) group, final jobs not asked again, unreachable hosts keep
their cached rows."""

from __future__ import annotations

from pbsvllm.errors import SchedulerError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.launch import refresh_statuses
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import JobStatus
from pbsvllm.statusview import build_rows, fmt_duration, format_table
from tests.fakes import FakeScheduler


def test_rows_from_live_and_cached_status():
    recs = [
        JobRecord(job_id="1.s", alias="a", scheduler="pbspro", host="me@h"),
        JobRecord(job_id="2.s", alias="b", scheduler="pbspro", last_status=JobStatus("2.s", JobState.RUNNING, raw_state="R", walltime_used_s=100, walltime_limit_s=3600), last_status_at=1000.0),
        JobRecord(job_id="3.s", alias="c", cancelled_at=5.0),
    ]
    live = {
        "1.s": JobStatus("1.s", JobState.RUNNING, raw_state="R", queue="debug", exec_host="x3006c0s13b1n0", walltime_used_s=600, walltime_limit_s=3600),
        "3.s": JobStatus("3.s", JobState.FAILED, raw_state="F", exit_status=271, exit_reason="killed by SIGTERM"),
    }
    rows = build_rows(recs, live, now=1100.0)
    a, b, c = rows
    assert (a["state"], a["node"], a["walltime_left_s"], a["stale"], a["host"]) == ("RUNNING", "x3006c0s13b1n0", 3000, False, "me@h")
    assert b["stale"] and b["walltime_used_s"] == 200 and b["walltime_left_s"] == 3400  # cached + time since
    assert c["state"] == "CANCELLED" and c["exit_status"] == 271 and c["walltime_left_s"] is None
    table = format_table(rows)
    assert "RUNNING (R)*" in table and "271: killed by SIGTERM" in table and "cached state" in table
    assert format_table([]) == "no tracked jobs"
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "-"


def CountingScheduler(fail=False):
    """Every job RUNNING, or every call failing like an unreachable server; the calls are counted."""
    return FakeScheduler(
        name="pbspro",
        default=lambda i: JobStatus(i, JobState.RUNNING, raw_state="R"),
        fail=SchedulerError("`qstat` on h2 exited 1: cannot connect to server") if fail else None,
    )


def test_refresh_one_call_per_group_skips_final_and_survives_unreachable(tmp_path):
    store = JobStore(str(tmp_path))
    for i in range(50):
        store.save(JobRecord(job_id=f"{i}.a", host="h1", scheduler="pbspro"))
    store.save(JobRecord(job_id="done.a", host="h1", scheduler="pbspro", last_status=JobStatus("done.a", JobState.COMPLETED)))
    for i in range(3):
        store.save(JobRecord(job_id=f"{i}.b", host="h2", scheduler="torque", last_status=JobStatus(f"{i}.b", JobState.PENDING)))
    scheds = {"h1": CountingScheduler(), "h2": CountingScheduler(fail=True)}
    statuses, errors = refresh_statuses(store, store.list(), scheduler_for=lambda h, s: scheds[h])
    assert len(scheds["h1"].asked) == 1 and len(scheds["h1"].asked[0]) == 50  # one call, final job not asked
    assert len(scheds["h2"].asked) == 1
    assert len(statuses) == 50 and len(errors) == 1 and "h2 (torque)" in errors[0]
    assert store.get("7.a").last_state is JobState.RUNNING  # cached for --offline
    rows = build_rows(store.list(), statuses)
    assert {r["job_id"]: r["stale"] for r in rows}["0.b"] is True
