"""The keep-alive decisions (pure): hand-over timing, recovery, caps, --until, budget."""

from __future__ import annotations

import pytest

from pbsvllm.keepalive.policy import (
    ActionKind,
    ChainJob,
    ChainView,
    JobPhase,
    KeepAliveSpec,
    backoff_s,
    decide,
    lead_time,
    p90,
)

T0 = 1_000_000.0


def spec(**kw):
    kw.setdefault("alias", "tiny")
    return KeepAliveSpec(**kw)


def view(jobs, now=T0, s=None, **kw):
    s = s or spec()
    return ChainView(spec=s, now=now, jobs=tuple(jobs), lead=lead_time([], [], s), **kw)


def job(jid, phase, **kw):
    kw.setdefault("submitted_at", T0 - 1000)
    return ChainJob(job_id=jid, phase=phase, **kw)


def kinds(actions):
    return [(a.kind, a.job_id) for a in actions]


def test_p90_nearest_rank():
    assert p90([5.0]) == 5.0
    assert p90(list(range(1, 11))) == 9
    assert p90([3, 1, 2]) == 3
    with pytest.raises(ValueError):
        p90([])


def test_lead_time_defaults_then_measured():
    s = spec(margin_s=60, safety_factor=1.5)
    lt = lead_time([], [], s)
    assert lt.queue_samples == 0 and lt.ready_samples == 0
    assert lt.seconds == (300 + 300) * 1.5 + 60
    assert "default" in lt.explain()
    lt = lead_time([10, 20, 30], [40, 50], s)
    assert (lt.queue_wait_s, lt.start_to_ready_s) == (30, 50)
    assert lt.seconds == (30 + 50) * 1.5 + 60
    assert "p90 of 3 measured" in lt.explain()


def test_lead_time_uses_only_recent_history():
    s = spec()
    lt = lead_time([10_000] + [10] * 10, [20] * 11, s)
    assert lt.queue_wait_s == 10 and lt.queue_samples == 10


def test_no_job_submits_first():
    acts = decide(view([]))
    assert kinds(acts) == [(ActionKind.SUBMIT, "")]


def test_ready_job_joins():
    acts = decide(view([job("1", JobPhase.READY, started_at=T0 - 900, ready_at=T0 - 10, walltime_left_s=3000)]))
    assert (ActionKind.JOIN, "1") in kinds(acts)


def test_handover_submitted_when_walltime_left_below_lead():
    s = spec(margin_s=0, safety_factor=1.0)
    lead = lead_time([], [], s).seconds  # 600 s
    far = job("1", JobPhase.MEMBER, started_at=T0 - 100, ready_at=T0 - 50, walltime_left_s=lead + 5)
    acts = decide(view([far], s=s))
    assert [a.kind for a in acts] == [ActionKind.WAIT]
    assert acts[0].at == pytest.approx(T0 + 5)
    near = dataclass_replace(far, walltime_left_s=lead - 1)
    acts = decide(view([near], s=s))
    assert [a.kind for a in acts] == [ActionKind.SUBMIT]
    assert "walltime left" in acts[0].reason and "lead" in acts[0].reason


def test_no_second_successor_while_one_is_pending():
    cur = job("1", JobPhase.MEMBER, started_at=T0 - 100, ready_at=T0 - 50, walltime_left_s=10)
    succ = job("2", JobPhase.QUEUED, submitted_at=T0 - 5)
    assert ActionKind.SUBMIT not in [a.kind for a in decide(view([cur, succ]))]
    succ = job("2", JobPhase.STARTING, submitted_at=T0 - 5, started_at=T0 - 2)
    assert ActionKind.SUBMIT not in [a.kind for a in decide(view([cur, succ]))]


def test_handover_joins_new_then_drains_and_cancels_old():
    old = job("1", JobPhase.MEMBER, started_at=T0 - 900, ready_at=T0 - 800, walltime_left_s=60)
    new = job("2", JobPhase.READY, submitted_at=T0 - 300, started_at=T0 - 200, ready_at=T0 - 1, walltime_left_s=3000)
    acts = kinds(decide(view([old, new])))
    assert acts.index((ActionKind.JOIN, "2")) < acts.index((ActionKind.DRAIN, "1")) < acts.index((ActionKind.CANCEL, "1"))
    assert (ActionKind.DRAIN, "2") not in acts and (ActionKind.CANCEL, "2") not in acts


def test_draining_job_is_cancelled():
    old = job("1", JobPhase.DRAINING, started_at=T0 - 900, ready_at=T0 - 800, walltime_left_s=60)
    new = job("2", JobPhase.MEMBER, started_at=T0 - 200, ready_at=T0 - 1, walltime_left_s=3000)
    assert (ActionKind.CANCEL, "1") in kinds(decide(view([old, new])))


def test_silent_scheduler_changes_nothing():
    cur = job("1", JobPhase.UNSURE, started_at=T0 - 100, ready_at=T0 - 50, walltime_left_s=1)
    acts = decide(view([cur], consecutive_failures=0))
    assert [a.kind for a in acts] == [ActionKind.WAIT]
    assert "no usable answer" in acts[0].reason


def test_recovery_backoff_then_submit():
    s = spec(backoff_base_s=30)
    ended = job("1", JobPhase.ENDED, ended_at=T0 - 10)
    acts = decide(view([ended], s=s, consecutive_failures=2, last_failure_at=T0 - 10,
                       recent_failure_signatures=("exit 1", "oom")))
    assert [a.kind for a in acts] == [ActionKind.WAIT]
    assert acts[0].at == pytest.approx(T0 - 10 + 60)
    acts = decide(view([ended], now=T0 + 60, s=s, consecutive_failures=2, last_failure_at=T0 - 10,
                       recent_failure_signatures=("exit 1", "oom")))
    assert [a.kind for a in acts] == [ActionKind.SUBMIT]
    assert "failure 2 of at most 3" in acts[0].reason


def test_backoff_is_capped():
    s = spec(backoff_base_s=30, backoff_max_s=100)
    assert [backoff_s(n, s) for n in range(5)] == [0, 30, 60, 100, 100]


def test_consecutive_failure_cap_stops():
    acts = decide(view([job("1", JobPhase.ENDED)], consecutive_failures=3, last_failure_at=T0 - 1000,
                       recent_failure_signatures=("a", "b", "c")))
    assert [a.kind for a in acts] == [ActionKind.STOP]
    assert "3 consecutive failures" in acts[0].reason and "c" in acts[0].reason


def test_same_failure_twice_stops_with_cause():
    acts = decide(view([job("1", JobPhase.ENDED)], consecutive_failures=2, last_failure_at=T0 - 1000,
                       recent_failure_signatures=("kv_cache_too_small", "kv_cache_too_small")))
    assert [a.kind for a in acts] == [ActionKind.STOP]
    assert "kv_cache_too_small" in acts[0].reason


def test_until_reached_drains_cancels_and_stops():
    s = spec(until=T0)
    cur = job("1", JobPhase.MEMBER, started_at=T0 - 100, ready_at=T0 - 50, walltime_left_s=500)
    pend = job("2", JobPhase.QUEUED, submitted_at=T0 - 5)
    acts = kinds(decide(view([cur, pend], s=s)))
    assert acts == [(ActionKind.DRAIN, "1"), (ActionKind.CANCEL, "1"), (ActionKind.CANCEL, "2"), (ActionKind.STOP, "")]


def test_no_successor_when_serving_job_outlasts_until():
    s = spec(until=T0 + 100, margin_s=0)
    cur = job("1", JobPhase.MEMBER, started_at=T0 - 100, ready_at=T0 - 50, walltime_left_s=200)
    acts = decide(view([cur], s=s))
    assert [a.kind for a in acts] == [ActionKind.WAIT]
    assert "--until" in acts[0].reason


def test_budget_blocks_successor():
    s = spec(budget_node_hours=1.0, walltime_s=3600, margin_s=0)
    cur = job("1", JobPhase.MEMBER, started_at=T0 - 600, ready_at=T0 - 500, walltime_left_s=10)
    acts = decide(view([cur], s=s))
    assert [a.kind for a in acts] == [ActionKind.WAIT] and "budget" in acts[0].reason
    # nothing active and over budget: the chain stops
    acts = decide(view([job("1", JobPhase.ENDED, started_at=T0 - 600, ended_at=T0)], s=s))
    assert [a.kind for a in acts] == [ActionKind.STOP] and "budget" in acts[0].reason


def test_stopped_chain_does_nothing():
    assert decide(view([], stopped=True)) == []


@pytest.mark.parametrize("kw", [dict(margin_s=float("inf")), dict(safety_factor=0.5), dict(budget_node_hours=0),
                                dict(budget_node_hours=float("nan")), dict(max_consecutive_failures=0), dict(nodes=0)])
def test_bad_spec_values_refused(kw):
    with pytest.raises(ValueError):
        spec(**kw)


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_parse_until_durations_and_dates():
    from pbsvllm.keepalive.policy import parse_until

    assert parse_until("90m", T0) == T0 + 5400
    assert parse_until("1h30m", T0) == T0 + 5400
    assert parse_until("3d", T0) == T0 + 3 * 86400
    assert parse_until("2100-01-01T00:00+00:00", T0) == 4102444800.0
    for bad in ["", "soon", "0m", "-5h", "1970-01-01T00:00+00:00", "12x"]:
        with pytest.raises(ValueError):
            parse_until(bad, T0)


def test_parse_budget():
    from pbsvllm.keepalive.policy import parse_budget

    assert parse_budget("40") == 40.0 and parse_budget("2.5") == 2.5
    for bad in ["inf", "nan", "0", "-1", "lots", "1e400"]:
        with pytest.raises(ValueError):
            parse_budget(bad)
