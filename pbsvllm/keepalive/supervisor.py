"""The keep-alive supervisor: observe, decide (pure), act, record.

One :meth:`Supervisor.step` is: read the chain (under its lock), observe
every active job through :class:`Ports` (the scheduler's state, the
server's readiness), turn that into a :class:`~pbsvllm.keepalive.policy.ChainView`,
let :func:`~pbsvllm.keepalive.policy.decide` choose, apply each action and
write the chain back after each one. A supervisor killed between two
actions leaves a chain that the next step reads as it was left: a
submitted successor is recorded before anything else happens, a drained
member is recorded as draining, and jobs keep serving while no supervisor
runs.

Evidence rules (a silent scheduler never retires a live server): a job is
ended only when the scheduler reports a terminal state; an unreachable
scheduler, an UNKNOWN answer or a missing row makes the job UNSURE, and an
UNSURE chain changes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from pbsvllm.errors import PbsvllmError
from pbsvllm.keepalive.policy import (
    Action,
    ActionKind,
    ChainJob,
    ChainView,
    EndCause,
    JobPhase,
    decide,
    lead_time,
)
from pbsvllm.keepalive.state import ChainJobState, ChainState, ChainStore, handovers
from pbsvllm.models import JobState
from pbsvllm.scheduler.base import JobStatus

#: How often a supervisor looks at its chain when nothing is due sooner.
POLL_S = 5.0
#: A supervisor whose heartbeat is older than this is presumed dead.
STALE_S = 60.0


class Ports(Protocol):
    """The supervisor's I/O, one method per effect (fakes in tests)."""

    def statuses(self, job_ids: Sequence[str]) -> Dict[str, JobStatus]:
        """The scheduler's answer for these jobs (raises PbsvllmError when it cannot answer)."""

    def server_url(self, job_id: str) -> Optional[str]:
        """The job's server URL from its server-info file, None while it has none."""

    def is_ready(self, job_id: str, url: str) -> bool:
        """The readiness check (model listed and a one-token completion)."""

    def submit_successor(self, template_job: str) -> str:
        """Submit another job like ``template_job``; its job id."""

    def join(self, alias: str, url: str, job_id: str) -> None:
        """Add a ready server to the alias (its router's membership)."""

    def drain(self, alias: str, url: str) -> None:
        """Take a server out of the alias, waiting for its in-flight requests."""

    def remove(self, alias: str, url: str) -> None:
        """Take a server that is gone out of the alias at once."""

    def cancel(self, job_id: str) -> None:
        """Cancel a job through its scheduler."""

    def failure_signature(self, job_id: str, status: JobStatus) -> str:
        """A short, stable name for why a job failed (the doctor's finding, the exit status)."""

    def queue_waits(self) -> List[float]:
        """Recent queue waits (submitted -> running) on the same queue, oldest first."""


def _is_walltime(status: JobStatus) -> bool:
    text = f"{status.exit_reason} {status.comment}".lower()
    return "walltime" in text or status.exit_status in (-29, 271)


@dataclasses.dataclass
class StepResult:
    actions: List[Action]
    next_at: float
    state: ChainState


class Supervisor:
    """Keeps one alias's chain alive; see the module docstring."""

    def __init__(self, store: ChainStore, alias: str, ports: Ports,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.alias = alias
        self.ports = ports
        self.clock = clock

    # -- observation
    def _observe(self, st: ChainState, now: float) -> Tuple[List[ChainJob], Dict[str, JobStatus]]:
        active = [j for j in st.jobs if j.ended_at is None]
        statuses: Dict[str, JobStatus] = {}
        scheduler_ok = True
        if active:
            try:
                statuses = self.ports.statuses([j.job_id for j in active])
            except PbsvllmError:
                scheduler_ok = False
        views: List[ChainJob] = []
        for j in st.jobs:
            views.append(self._observe_job(st, j, statuses.get(j.job_id) if scheduler_ok else None, now))
        return views, statuses

    def _observe_job(self, st: ChainState, j: ChainJobState, status: Optional[JobStatus], now: float) -> ChainJob:
        if j.ended_at is None and status is not None and status.state.is_terminal:
            self._record_end(st, j, status, now)
        walltime_left: Optional[float] = None
        walltime: Optional[float] = None
        if status is not None:
            walltime = float(status.walltime_limit_s) if status.walltime_limit_s is not None else None
            if walltime and st.spec.walltime_s is None:
                # the budget projects each successor at its full walltime
                st.spec = dataclasses.replace(st.spec, walltime_s=walltime)
            if status.walltime_left_s is not None:
                walltime_left = float(status.walltime_left_s)
        if j.ended_at is not None:
            phase = JobPhase.ENDED
        elif status is None or status.state == JobState.UNKNOWN:
            phase = JobPhase.UNSURE
        elif status.state in (JobState.PENDING, JobState.HELD):
            phase = JobPhase.QUEUED
        else:  # RUNNING / COMPLETING
            if j.started_at is None:
                j.started_at = now
            if j.drained_at is not None:
                phase = JobPhase.DRAINING
            elif j.joined_at is not None:
                phase = JobPhase.MEMBER
            elif j.ready_at is not None:
                phase = JobPhase.READY
            else:
                phase = JobPhase.STARTING
                url = self.ports.server_url(j.job_id)
                if url and self.ports.is_ready(j.job_id, url):
                    j.url, j.ready_at = url, now
                    st.consecutive_failures = 0
                    st.failure_signatures = []
                    st.log(now, "ready", j.job_id, f"ready at {url}")
                    phase = JobPhase.READY
        return ChainJob(
            job_id=j.job_id, phase=phase, submitted_at=j.submitted_at, started_at=j.started_at,
            ready_at=j.ready_at, ended_at=j.ended_at, walltime_s=walltime, walltime_left_s=walltime_left,
            nodes=st.spec.nodes, end_cause=j.end_cause, failure_signature=j.failure_signature,
        )

    def _record_end(self, st: ChainState, j: ChainJobState, status: JobStatus, now: float) -> None:
        j.ended_at = now
        if j.started_at is None and status.walltime_used_s:
            j.started_at = now - float(status.walltime_used_s)
        detail = status.exit_reason or status.comment or status.state.value
        if st.stopped_at is not None:
            cause = EndCause.CHAIN_ENDED
        elif j.drained_at is not None:
            cause = EndCause.HANDED_OVER
        elif j.ready_at is None:
            cause = EndCause.FAILED_START
        elif _is_walltime(status):
            cause = EndCause.WALLTIME
        elif status.state == JobState.CANCELLED:
            cause = EndCause.CANCELLED
        else:
            cause = EndCause.SERVER_DIED
        j.end_cause, j.end_detail = cause, detail
        if j.joined_at is not None and j.drained_at is None and j.url:
            # Gone without a drain: out of the alias at once.
            self.ports.remove(st.alias, j.url)
            j.drained_at = now
        if cause.is_failure:
            st.consecutive_failures += 1
            st.last_failure_at = now
            if cause == EndCause.FAILED_START:
                j.failure_signature = self.ports.failure_signature(j.job_id, status) or detail
                st.failure_signatures.append(j.failure_signature)
                del st.failure_signatures[:-10]
        st.log(now, "ended", j.job_id, f"{cause.value}: {detail}")

    # -- one step
    def step(self) -> StepResult:
        with self.store.lock(self.alias):
            st = self.store.load(self.alias)
            if st is None:
                raise PbsvllmError(f"no keep-alive chain for alias {self.alias!r}",
                                   hint=f"start one: `pbsvllm keepalive start {self.alias}`")
            now = self.clock()
            st.heartbeat_at = now
            jobs, _statuses = self._observe(st, now)
            self.store.save(st)
            waits = list(self.ports.queue_waits()) + [
                j.started_at - j.submitted_at for j in st.jobs if j.started_at is not None]
            ready_times = [j.ready_at - j.started_at for j in st.jobs
                           if j.ready_at is not None and j.started_at is not None]
            view = ChainView(
                spec=st.spec, now=now, jobs=tuple(jobs), lead=lead_time(waits, ready_times, st.spec),
                consecutive_failures=st.consecutive_failures, last_failure_at=st.last_failure_at,
                recent_failure_signatures=tuple(st.failure_signatures), stopped=st.stopped,
            )
            actions = decide(view)
            next_at = now + POLL_S
            for action in actions:
                if action.kind == ActionKind.WAIT:
                    if action.at is not None:
                        next_at = min(next_at, max(now + 1.0, action.at))
                    continue
                self._apply(st, action, now)
                self.store.save(st)
            return StepResult(actions=actions, next_at=next_at, state=st)

    def _apply(self, st: ChainState, action: Action, now: float) -> None:
        j = st.job(action.job_id) if action.job_id else None
        if action.kind == ActionKind.SUBMIT:
            template = st.template_job or (st.jobs[-1].job_id if st.jobs else "")
            if not template:
                raise PbsvllmError(f"keep-alive chain {st.alias!r} has no job to copy")
            new_id = self.ports.submit_successor(template)
            st.jobs.append(ChainJobState(job_id=new_id, submitted_at=now))
        elif action.kind == ActionKind.JOIN and j is not None and j.url:
            self.ports.join(st.alias, j.url, j.job_id)
            j.joined_at = now
        elif action.kind == ActionKind.DRAIN and j is not None:
            if j.url and j.drained_at is None:
                self.ports.drain(st.alias, j.url)
            j.drained_at = j.drained_at or now
        elif action.kind == ActionKind.CANCEL and j is not None:
            if j.drained_at is None:
                j.drained_at = now  # cancelled by the chain: its end is no failure
            self.ports.cancel(j.job_id)
        elif action.kind == ActionKind.STOP:
            st.stopped_at, st.stop_reason = now, action.reason
        st.log(now, action.kind.value, action.job_id, action.reason)


def chain_summary(st: ChainState, now: float, statuses: Optional[Mapping[str, JobStatus]] = None) -> Dict[str, object]:
    """What ``status``/``keepalive status`` show of a chain (stable keys)."""
    last_end = next((j for j in reversed(st.jobs) if j.ended_at is not None), None)
    waits = [j.started_at - j.submitted_at for j in st.jobs if j.started_at is not None]
    ready = [j.ready_at - j.started_at for j in st.jobs if j.ready_at is not None and j.started_at is not None]
    lead = lead_time(waits, ready, st.spec)
    return {
        "alias": st.alias,
        "state": "stopped" if st.stopped else "running",
        "stop_reason": st.stop_reason,
        "until": st.spec.until,
        "budget_node_hours": st.spec.budget_node_hours,
        "node_hours_used": round(
            sum(
                ((j.ended_at or now) - j.started_at) * st.spec.nodes / 3600.0
                for j in st.jobs
                if j.started_at is not None
            ),
            4,
        ),
        "lead_time_s": round(lead.seconds, 1),
        "lead_time": lead.explain(),
        "consecutive_failures": st.consecutive_failures,
        "jobs": [j.to_dict() for j in st.jobs],
        "last_end": (
            {
                "job_id": last_end.job_id,
                "cause": last_end.end_cause.value if last_end.end_cause else None,
                "detail": last_end.end_detail,
            }
            if last_end
            else None
        ),
        "last_event": dataclasses.asdict(st.events[-1]) if st.events else None,
        "handovers": [dataclasses.asdict(h) for h in handovers(st)],
        "supervisor_pid": st.supervisor_pid,
        "heartbeat_at": st.heartbeat_at,
    }
