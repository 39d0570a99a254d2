"""``pbsvllm scale ALIAS N``: submit or cancel jobs until N servers of the alias run.

One job per server (PBS job arrays are not used: see docs/router.md). The
alias's newest job is the template: its rendered script is submitted again
(the script picks a free port when it starts, and its log and server-info
paths carry the new job id). Scaling down cancels jobs that are not ready
yet first (newest first), then ready ones, oldest first (the least walltime
left); a ready one leaves its router before it is cancelled (drained first).
With ``wait`` the new jobs are followed until they are ready, and join the
alias's router right after their readiness check.

Pure selection (:func:`plan_scale`) / I/O (:func:`scale`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import ConfigError, JobNotFoundError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.models import ServerState

if TYPE_CHECKING:
    from pbsvllm.config import Settings
    from pbsvllm.router.membership import LeaveResult

MAX_SERVERS = 256


def live_jobs(records: Sequence[JobRecord], alias: str) -> List[JobRecord]:
    """The alias's jobs that serve or may still serve: not cancelled, not failed or
    stopped, not ended by the scheduler. Oldest first."""
    return sorted((r for r in records if r.alias == alias and not r.cancelled_at and not r.server_state.is_final
                   and not (r.last_status is not None and r.last_status.state.is_terminal)),
                  key=lambda r: r.submitted_at)


@dataclasses.dataclass(frozen=True)
class ScalePlan:
    submit: int                      # how many jobs to submit
    cancel: Tuple[JobRecord, ...]    # which jobs to cancel, in this order


def plan_scale(live: Sequence[JobRecord], n: int) -> ScalePlan:
    """What to do to go from ``live`` (oldest first) to ``n`` jobs."""
    if n < 0 or n > MAX_SERVERS:
        raise ConfigError(f"scale: N must be 0..{MAX_SERVERS}, got {n}")
    if len(live) <= n:
        return ScalePlan(submit=n - len(live), cancel=())
    surplus = len(live) - n
    not_ready = [r for r in reversed(live) if r.server_state != ServerState.READY]  # newest first
    ready = [r for r in live if r.server_state == ServerState.READY]              # oldest first
    return ScalePlan(submit=0, cancel=tuple((not_ready + ready)[:surplus]))


def _with_job_id(path: str, old_id: str) -> str:
    """A record's path with its job id turned back into the ``{job_id}`` placeholder."""
    return path.replace(old_id, "{job_id}") if old_id and old_id in path else path


@dataclasses.dataclass
class ScaleResult:
    alias: str
    wanted: int
    submitted: List[str]
    cancelled: List[Dict[str, object]]
    ready: int                       # servers of the alias ready at the end
    url: str                         # the alias's stable URL ("" without a router)
    timed_out: bool = False

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


def resubmit(settings: Settings, store: JobStore, template: JobRecord) -> JobRecord:
    """Submit ``template``'s rendered script once more as a new job of its alias."""
    from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job
    from pbsvllm.transport import get_transport

    transport = get_transport(template.host)
    text = transport.read_text(template.script_path)
    path = re.sub(r"(\.[A-Za-z0-9]+)?$", "", template.script_path, count=1)
    job = SubmitJob(alias=template.alias, script_text=text, script_path=path + f".scale{len(store.list())}.pbs",
                    model=template.model, served_model_name=template.served_model_name,
                    log_path=_with_job_id(template.log_path, template.job_id),
                    server_info_path=_with_job_id(template.server_info_path, template.job_id),
                    port=template.port, plan=dict(template.plan))
    target = dataclasses.replace(SubmitTarget.from_settings(settings, template.alias),
                                 host=template.host, scheduler=template.scheduler or settings.scheduler)
    return submit_job(target, job, transport=transport, store=store)


def scale(settings: Settings, store: JobStore, alias: str, n: int, *, wait: bool = False,
          timeout_s: Optional[float] = None, drain_timeout_s: float = 120.0,
          submit_one: Optional[Callable[[JobRecord], JobRecord]] = None,
          leave_and_cancel: Optional[Callable[[JobRecord], LeaveResult]] = None,
          say: Callable[[str], None] = lambda s: None) -> ScaleResult:
    """Submit or cancel jobs of ``alias`` until ``n`` of them run (``wait``: until ready)."""
    from pbsvllm import router
    from pbsvllm.launch import cancel_job, refresh_statuses
    from pbsvllm.router.membership import leave_then_cancel

    records = [r for r in store.list() if r.alias == alias]
    if not records:
        raise JobNotFoundError(f"alias {alias!r} has no job to scale from",
                               hint=f"submit one first: `pbsvllm submit MODEL --alias {alias}`")
    refresh_statuses(store, live_jobs(records, alias))
    live = live_jobs([store.get(r.job_id) for r in records], alias)
    plan = plan_scale(live, n)
    template = (live or records)[-1]
    submit_one = submit_one or (lambda t: resubmit(settings, store, t))

    def default_leave(rec: JobRecord) -> LeaveResult:
        return leave_then_cancel(settings.home, rec, lambda: cancel_job(store, rec.job_id)[1],
                                 drain_timeout_s=drain_timeout_s, say=say)

    leave = leave_and_cancel or default_leave
    submitted: List[JobRecord] = []
    for _ in range(plan.submit):
        rec = submit_one(template)
        submitted.append(rec)
        say(f"submitted {rec.job_id} ({alias})")
    cancelled = [leave(rec).to_dict() for rec in plan.cancel]
    timed_out = False
    if wait and submitted:
        from pbsvllm.router.membership import RouterMembership
        from pbsvllm.watcher import watch_records

        res = watch_records(settings, submitted, store=store, timeout_s=timeout_s,
                            membership=RouterMembership(settings))
        timed_out = res.timed_out
    ready = sum(1 for r in live_jobs(store.list(), alias) if r.server_state == ServerState.READY)
    url = router.url(alias, home=settings.home) if alias in router.aliases(home=settings.home) else ""
    return ScaleResult(alias=alias, wanted=n, submitted=[r.job_id for r in submitted], cancelled=cancelled,
                       ready=ready, url=url, timed_out=timed_out)
