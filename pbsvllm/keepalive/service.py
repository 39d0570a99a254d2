"""Keep-alive operations behind ``pbsvllm.api`` (start, stop, status, ensure)."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from pbsvllm.errors import ConfigError, PbsvllmError
from pbsvllm.keepalive import daemon
from pbsvllm.keepalive.policy import KeepAliveSpec, parse_budget, parse_until
from pbsvllm.keepalive.state import ChainJobState, ChainState, ChainStore
from pbsvllm.keepalive.supervisor import chain_summary


def make_spec(alias: str, *, until: Optional[str], budget: Optional[str], walltime_s: Optional[float],
              nodes: int = 1, now: Optional[float] = None, margin_s: Optional[float] = None) -> KeepAliveSpec:
    now = time.time() if now is None else now
    try:
        extra: Dict[str, Any] = {"margin_s": float(margin_s)} if margin_s is not None else {}
        return KeepAliveSpec(
            alias=alias,
            until=parse_until(until, now) if until else None,
            budget_node_hours=parse_budget(budget) if budget else None,
            walltime_s=walltime_s,
            nodes=nodes,
            **extra,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def start(alias: str, *, home: str, until: Optional[str] = None, budget: Optional[str] = None,
          job: Optional[str] = None, margin_s: Optional[float] = None, spawn: bool = True) -> Dict[str, Any]:
    """Start (or restart) the chain of ``alias`` from ``job`` (default: the alias's newest job)."""
    from pbsvllm.jobs import JobStore

    jobs = JobStore(home)
    rec = jobs.find(job or alias)
    if rec.alias != alias:
        raise ConfigError(f"job {rec.job_id} serves alias {rec.alias!r}, not {alias!r}")
    walltime = rec.last_status.walltime_limit_s if rec.last_status is not None else None
    spec = make_spec(alias, until=until, budget=budget, walltime_s=float(walltime) if walltime else None,
                     margin_s=margin_s)
    store = ChainStore(home)
    with store.lock(alias):
        old = store.load(alias)
        if old is not None and not old.stopped and daemon.is_running(store, alias):
            raise PbsvllmError(
                f"alias {alias!r} is already kept alive",
                hint=f"`pbsvllm keepalive stop {alias}` first, or see `pbsvllm keepalive status {alias}`",
            )
        st = ChainState(spec=spec, template_job=rec.job_id,
                        jobs=[ChainJobState(job_id=rec.job_id, submitted_at=rec.submitted_at)])
        st.log(time.time(), "start", rec.job_id, "chain started")
        store.save(st)
    if spawn:
        daemon.spawn(home, alias)
    return dict(chain_summary(st, time.time()), supervisor_running=spawn)


def stop(alias: str, *, home: str, cancel: bool = False) -> str:
    store = ChainStore(home)
    with store.lock(alias):
        st = store.load(alias)
        if st is None:
            raise PbsvllmError(f"alias {alias!r} has no keep-alive chain")
        if not st.stopped:
            st.stopped_at, st.stop_reason = time.time(), "stopped by the user"
            st.log(time.time(), "stop", "", st.stop_reason)
            store.save(st)
    daemon.stop(home, alias)
    if not cancel:
        return "chain stopped; its jobs keep running until their walltime"
    from pbsvllm.keepalive.ports import LivePorts

    ports = LivePorts(home, alias)
    done: List[str] = []
    for j in st.jobs:
        if j.ended_at is None:
            if j.joined_at is not None and j.drained_at is None and j.url:
                ports.drain(alias, j.url)
            ports.cancel(j.job_id)
            done.append(j.job_id)
    return "chain stopped; cancelled " + (", ".join(done) if done else "no job")


def status(alias: Optional[str], *, home: str, revive: bool = True) -> List[Dict[str, Any]]:
    store = ChainStore(home)
    out = []
    for name in ([alias] if alias else store.aliases()):
        st = store.load(name)
        if st is None:
            if alias:
                raise PbsvllmError(f"alias {alias!r} has no keep-alive chain")
            continue
        if revive:
            daemon.ensure(home, name)
        out.append(dict(chain_summary(st, time.time()), supervisor_running=daemon.is_running(store, name)))
    return out


def ensure(*, home: str) -> Dict[str, Optional[int]]:
    store = ChainStore(home)
    return {a: daemon.ensure(home, a) for a in store.aliases()}
