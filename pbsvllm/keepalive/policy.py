"""The keep-alive decisions, as a pure function of what was observed.

Nothing here does I/O: the supervisor (``pbsvllm.keepalive.supervisor``)
gathers a :class:`ChainView` (the alias's jobs, what the scheduler and the
servers said, the clock) and applies the :class:`Action` list that
:func:`decide` returns. Every decision carries its reason, so ``status``
can say why a successor was submitted or why the chain stopped.

The lead time (how long before the serving job's walltime runs out its
successor is submitted) is computed from what pbsvllm measured itself,
see :func:`lead_time` and ``docs/keepalive.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import List, Optional, Sequence, Tuple

#: Used while an alias has no measured history of its own.
DEFAULT_QUEUE_WAIT_S = 300.0
DEFAULT_START_TO_READY_S = 300.0
#: How many recent samples the lead time looks at.
HISTORY = 10


class EndCause(str, enum.Enum):
    """Why a job of the chain ended (recorded; shown by ``status``)."""

    HANDED_OVER = "handed-over"        # drained and cancelled after its successor was ready
    WALLTIME = "walltime"              # the scheduler ended it at its walltime
    FAILED_START = "failed-start"      # ended before its server was ever ready
    SERVER_DIED = "server-died"        # was ready, then the job ended early
    CANCELLED = "cancelled"            # cancelled by someone else than the chain
    CHAIN_ENDED = "chain-ended"        # --until reached / chain stopped
    UNKNOWN = "unknown"

    @property
    def is_failure(self) -> bool:
        return self in (EndCause.FAILED_START, EndCause.SERVER_DIED, EndCause.UNKNOWN)


class JobPhase(str, enum.Enum):
    """Where one job of the chain is, as the supervisor observed it."""

    QUEUED = "queued"      # submitted, not running (or held)
    STARTING = "starting"  # running, server not ready yet
    READY = "ready"        # server passed the readiness check
    MEMBER = "member"      # ready and serving behind the alias
    DRAINING = "draining"  # leaving the alias (successor is serving)
    ENDED = "ended"        # the scheduler positively reported its end
    UNSURE = "unsure"      # the scheduler said nothing usable this time


@dataclasses.dataclass(frozen=True)
class ChainJob:
    """One job of an alias's chain, as observed now."""

    job_id: str
    phase: JobPhase
    submitted_at: float
    started_at: Optional[float] = None     # first seen running
    ready_at: Optional[float] = None       # passed the readiness check
    ended_at: Optional[float] = None
    walltime_s: Optional[float] = None     # the job's limit
    walltime_left_s: Optional[float] = None
    nodes: int = 1
    end_cause: Optional[EndCause] = None
    failure_signature: str = ""            # e.g. the doctor's finding id, "oom", "exit 1"

    @property
    def active(self) -> bool:
        return self.phase not in (JobPhase.ENDED,)

    def node_hours(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at) * self.nodes / 3600.0

    def expected_end(self, now: float) -> Optional[float]:
        """When the scheduler will end it (walltime), if known."""
        if self.walltime_left_s is not None:
            return now + self.walltime_left_s
        if self.started_at is not None and self.walltime_s is not None:
            return self.started_at + self.walltime_s
        return None


@dataclasses.dataclass(frozen=True)
class KeepAliveSpec:
    """What the user asked for (``submit --keep-alive``, or the alias's
    ``keep_alive`` settings)."""

    alias: str
    until: Optional[float] = None               # epoch seconds; None: no end
    budget_node_hours: Optional[float] = None   # None: no budget
    walltime_s: Optional[float] = None          # each job's walltime (for the budget projection)
    nodes: int = 1
    margin_s: float = 120.0
    safety_factor: float = 1.5
    max_consecutive_failures: int = 3
    same_failure_limit: int = 2                 # identical failed starts in a row before giving up
    backoff_base_s: float = 30.0
    backoff_max_s: float = 900.0

    def __post_init__(self) -> None:
        for name in ("margin_s", "backoff_base_s", "backoff_max_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"keep-alive {name} must be a finite number >= 0, not {v!r}")
        if not (math.isfinite(self.safety_factor) and self.safety_factor >= 1.0):
            raise ValueError(f"keep-alive safety_factor must be >= 1, not {self.safety_factor!r}")
        if self.max_consecutive_failures < 1 or self.same_failure_limit < 1:
            raise ValueError("keep-alive failure caps must be >= 1")
        if self.budget_node_hours is not None and not (
            math.isfinite(self.budget_node_hours) and self.budget_node_hours > 0
        ):
            raise ValueError(
                f"keep-alive budget must be a positive number of node-hours, not {self.budget_node_hours!r}"
            )
        if self.nodes < 1:
            raise ValueError("keep-alive nodes must be >= 1")


@dataclasses.dataclass(frozen=True)
class LeadTime:
    """How long before the serving job ends its successor is submitted."""

    seconds: float
    queue_wait_s: float
    start_to_ready_s: float
    queue_samples: int
    ready_samples: int
    safety_factor: float
    margin_s: float

    def explain(self) -> str:
        def src(n: int) -> str:
            return f"p90 of {n} measured" if n else "default, nothing measured yet"

        return (f"lead {self.seconds:.0f} s = ({self.queue_wait_s:.0f} s queue wait [{src(self.queue_samples)}]"
                f" + {self.start_to_ready_s:.0f} s start-to-ready [{src(self.ready_samples)}])"
                f" x {self.safety_factor:g} + {self.margin_s:.0f} s margin")


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile (the largest of up to 9 samples)."""
    if not values:
        raise ValueError("p90 of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(0.9 * len(ordered)))
    return ordered[rank - 1]


def lead_time(queue_waits: Sequence[float], start_to_ready: Sequence[float], spec: KeepAliveSpec) -> LeadTime:
    """``(p90 queue wait + p90 start-to-ready) x safety + margin``.

    ``queue_waits``: recent waits (submitted -> running) of jobs on the same
    host, scheduler and queue, newest last; ``start_to_ready``: this alias's
    recent times from running to ready. Only the last :data:`HISTORY`
    samples count, so the estimate follows the queue as it changes.
    """
    qs = [float(x) for x in queue_waits if x is not None and x >= 0][-HISTORY:]
    rs = [float(x) for x in start_to_ready if x is not None and x >= 0][-HISTORY:]
    q = p90(qs) if qs else DEFAULT_QUEUE_WAIT_S
    r = p90(rs) if rs else DEFAULT_START_TO_READY_S
    return LeadTime(
        seconds=(q + r) * spec.safety_factor + spec.margin_s,
        queue_wait_s=q,
        start_to_ready_s=r,
        queue_samples=len(qs),
        ready_samples=len(rs),
        safety_factor=spec.safety_factor,
        margin_s=spec.margin_s,
    )


def backoff_s(consecutive_failures: int, spec: KeepAliveSpec) -> float:
    """Exponential back-off after the n-th consecutive failure (n >= 1)."""
    if consecutive_failures <= 0:
        return 0.0
    return min(spec.backoff_max_s, spec.backoff_base_s * (2 ** (consecutive_failures - 1)))


# ---------------------------------------------------------------- actions


class ActionKind(str, enum.Enum):
    SUBMIT = "submit"        # submit a successor / replacement job
    JOIN = "join"            # add a ready job's server to the alias
    DRAIN = "drain"          # take a job's server out of the alias (drain first)
    CANCEL = "cancel"        # cancel a job through its scheduler
    STOP = "stop"            # the chain ends (reason says why)
    WAIT = "wait"            # nothing to do until `at`


@dataclasses.dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    job_id: str = ""
    at: Optional[float] = None   # WAIT: when to look again


@dataclasses.dataclass(frozen=True)
class ChainView:
    """Everything :func:`decide` needs, gathered by the supervisor."""

    spec: KeepAliveSpec
    now: float
    jobs: Tuple[ChainJob, ...]                      # the alias's chain, oldest first
    lead: LeadTime
    consecutive_failures: int = 0
    last_failure_at: Optional[float] = None
    recent_failure_signatures: Tuple[str, ...] = ()  # newest last, failed starts only
    stopped: bool = False

    def node_hours_used(self) -> float:
        return sum(j.node_hours(self.now) for j in self.jobs)


def _successor_fits_budget(view: ChainView) -> Tuple[bool, str]:
    spec = view.spec
    if spec.budget_node_hours is None:
        return True, ""
    used = view.node_hours_used()
    per_job = (spec.walltime_s or 0.0) * spec.nodes / 3600.0
    if used + per_job > spec.budget_node_hours + 1e-9:
        return False, (f"budget: {used:.2f} node-hours used, a successor would take up to {per_job:.2f} more,"
                       f" over the {spec.budget_node_hours:g} node-hour budget")
    return True, ""


def _successor_before_until(view: ChainView) -> Tuple[bool, str]:
    until = view.spec.until
    if until is None:
        return True, ""
    if view.now >= until:
        return False, "the chain's end (--until) is reached"
    return True, ""


def decide(view: ChainView) -> List[Action]:
    """The actions to take now, in order. Pure; see the module docstring.

    Rules, in order:

    1. ``--until`` reached: every job of the chain is drained and cancelled
       and the chain stops.
    2. A ready job not yet serving joins the alias. Once a newer job serves,
       older serving jobs are drained, then cancelled (hand-over).
    3. Hand-over: when the serving job's walltime left is at most the lead
       time and no successor is queued or starting, submit one (if the
       budget and ``--until`` allow).
    4. Recovery: with no job active, submit a replacement after the back-off
       of the consecutive failures so far; stop after
       ``max_consecutive_failures``, or after ``same_failure_limit`` failed
       starts with the same signature (the same OOM or bad flag will not fix
       itself).
    """
    spec, now = view.spec, view.now
    if view.stopped:
        return []
    actions: List[Action] = []
    active = [j for j in view.jobs if j.active]
    unsure = [j for j in active if j.phase == JobPhase.UNSURE]

    # 1. the chain's end
    if spec.until is not None and now >= spec.until:
        for j in active:
            if j.phase in (JobPhase.MEMBER, JobPhase.DRAINING):
                actions.append(Action(ActionKind.DRAIN, "the chain's end (--until) is reached", j.job_id))
            actions.append(Action(ActionKind.CANCEL, "the chain's end (--until) is reached", j.job_id))
        actions.append(Action(ActionKind.STOP, "the chain's end (--until) is reached"))
        return actions

    # 2. membership: join ready jobs, drain older members once a newer one serves
    for j in active:
        if j.phase == JobPhase.READY:
            actions.append(Action(ActionKind.JOIN, "its server passed the readiness check", j.job_id))
    serving = [j for j in active if j.phase in (JobPhase.MEMBER, JobPhase.READY)]
    if len(serving) > 1:
        newest = max(serving, key=lambda j: (j.ready_at or 0.0, j.submitted_at))
        for j in serving:
            if j is not newest:
                actions.append(
                    Action(ActionKind.DRAIN, f"hand-over: its successor {newest.job_id} is serving", j.job_id)
                )
                actions.append(Action(ActionKind.CANCEL, f"hand-over to {newest.job_id} done", j.job_id))
    for j in active:
        if j.phase == JobPhase.DRAINING:
            actions.append(Action(ActionKind.CANCEL, "drained: its successor is serving", j.job_id))

    if unsure:
        # The scheduler said nothing usable about some job: no job is ended
        # and nothing is submitted on silence (a silent scheduler never
        # starts a job storm nor retires a live server).
        actions.append(Action(ActionKind.WAIT, "the scheduler gave no usable answer for "
                              + ", ".join(j.job_id for j in unsure) + "; changing nothing", at=now + 30.0))
        return actions

    pending = [j for j in active if j.phase in (JobPhase.QUEUED, JobPhase.STARTING)]
    serving = [j for j in active if j.phase in (JobPhase.MEMBER, JobPhase.READY)]

    # 3. hand-over before walltime
    if serving and not pending:
        current = max(serving, key=lambda j: (j.ready_at or 0.0, j.submitted_at))
        end = current.expected_end(now)
        if end is not None:
            left = end - now
            if left <= view.lead.seconds:
                ok, why = _successor_before_until(view)
                if ok:
                    ok, why = _successor_fits_budget(view)
                if ok and spec.until is not None and end >= spec.until:
                    ok, why = False, "the serving job lasts past the chain's end (--until): no successor needed"
                if ok:
                    actions.append(
                        Action(
                            ActionKind.SUBMIT,
                            f"hand-over: {current.job_id} has {left:.0f} s of walltime left <= {view.lead.explain()}",
                        )
                    )
                else:
                    actions.append(Action(ActionKind.WAIT, f"no successor for {current.job_id}: {why}", at=end))
            else:
                actions.append(
                    Action(
                        ActionKind.WAIT,
                        f"{current.job_id} serves; successor due in {left - view.lead.seconds:.0f} s",
                        at=now + (left - view.lead.seconds),
                    )
                )
        return actions

    # 4. recovery: nothing active at all
    if not active:
        sigs = [s for s in view.recent_failure_signatures if s]
        if view.consecutive_failures >= spec.max_consecutive_failures:
            actions.append(
                Action(
                    ActionKind.STOP,
                    f"{view.consecutive_failures} consecutive failures"
                    f" (cap {spec.max_consecutive_failures}); last: {sigs[-1] if sigs else 'unknown cause'}",
                )
            )
            return actions
        if len(sigs) >= spec.same_failure_limit and len(set(sigs[-spec.same_failure_limit:])) == 1:
            actions.append(Action(ActionKind.STOP, f"the last {spec.same_failure_limit} starts failed the same way"
                                  f" ({sigs[-1]}); retrying will not help"))
            return actions
        ok, why = _successor_before_until(view)
        if ok:
            ok, why = _successor_fits_budget(view)
        if not ok:
            actions.append(Action(ActionKind.STOP, why))
            return actions
        wait = backoff_s(view.consecutive_failures, spec)
        ready_at = (view.last_failure_at or now) + wait
        if view.consecutive_failures and now < ready_at:
            actions.append(Action(ActionKind.WAIT, f"back-off after {view.consecutive_failures} failure(s):"
                                  f" next try in {ready_at - now:.0f} s", at=ready_at))
            return actions
        reason = "replace the ended job" if view.consecutive_failures else "no job serves the alias"
        if view.consecutive_failures:
            reason += f" (failure {view.consecutive_failures} of at most {spec.max_consecutive_failures})"
        actions.append(Action(ActionKind.SUBMIT, reason))
    return actions


# ---------------------------------------------------------------- user input

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_until(value: str, now: float) -> float:
    """``--until``: an ISO date/time (``2026-12-09T18:00``, local time unless
    it carries an offset) or a duration from now (``90m``, ``12h``, ``3d``,
    ``1h30m``). Returns epoch seconds; raises ValueError with one line."""
    import datetime
    import re

    text = (value or "").strip()
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if text and m and any(m.groups()):
        d, h, mi, s = (int(x) if x else 0 for x in m.groups())
        seconds = d * 86400 + h * 3600 + mi * 60 + s
        if seconds <= 0:
            raise ValueError(f"--until {value!r}: the duration must be positive")
        return now + seconds
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--until {value!r} is neither a date/time (2026-12-09T18:00) nor a duration (12h, 3d, 1h30m)"
        ) from None
    ts = when.timestamp()
    if ts <= now:
        raise ValueError(f"--until {value!r} is in the past")
    return ts


def parse_budget(value: str) -> float:
    """``--budget``: node-hours, a positive finite number."""
    try:
        x = float(str(value).strip().removesuffix("nh").removesuffix("node-hours").strip())
    except ValueError:
        raise ValueError(f"--budget {value!r} is not a number of node-hours") from None
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"--budget {value!r} must be a positive number of node-hours")
    return x
