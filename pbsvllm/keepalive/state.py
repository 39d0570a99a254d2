"""The keep-alive chain of one alias: one typed record, one file.

``$PBSVLLM_HOME/keepalive/<alias>.json`` (0600, replaced atomically under a
lock) holds what the user asked for (:class:`~pbsvllm.keepalive.policy.KeepAliveSpec`),
the chain's jobs with what the supervisor observed of each (submitted,
running, ready, ended and why), the failure counters, and the last
decisions with their reasons. The supervisor writes it after every
action, so a supervisor killed at any point is recovered from by the next
one: jobs keep serving meanwhile, and nothing is submitted twice (a
submission is recorded before the next decision is taken).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pbsvllm.errors import PbsvllmError
from pbsvllm.keepalive.policy import EndCause, KeepAliveSpec
from pbsvllm.transport.local import atomic_write_text, makedirs_private

_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: How many decisions the state keeps for ``status``.
EVENTS_KEPT = 50
SCHEMA = 1


@dataclasses.dataclass
class ChainJobState:
    """What the supervisor observed of one job of the chain."""

    job_id: str
    submitted_at: float
    started_at: Optional[float] = None
    ready_at: Optional[float] = None
    joined_at: Optional[float] = None
    drained_at: Optional[float] = None
    ended_at: Optional[float] = None
    end_cause: Optional[EndCause] = None
    end_detail: str = ""
    failure_signature: str = ""
    url: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["end_cause"] = self.end_cause.value if self.end_cause else None
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> ChainJobState:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        cause = kw.get("end_cause")
        kw["end_cause"] = EndCause(cause) if cause else None
        return cls(**kw)


@dataclasses.dataclass
class ChainEvent:
    at: float
    kind: str
    job_id: str
    reason: str


@dataclasses.dataclass
class ChainState:
    """One alias's keep-alive chain."""

    spec: KeepAliveSpec
    jobs: List[ChainJobState] = dataclasses.field(default_factory=list)
    template_job: str = ""              # the job whose script and settings successors reuse
    consecutive_failures: int = 0
    last_failure_at: Optional[float] = None
    failure_signatures: List[str] = dataclasses.field(default_factory=list)  # failed starts, newest last
    stopped_at: Optional[float] = None
    stop_reason: str = ""
    events: List[ChainEvent] = dataclasses.field(default_factory=list)
    supervisor_pid: Optional[int] = None
    heartbeat_at: Optional[float] = None

    @property
    def alias(self) -> str:
        return self.spec.alias

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    def job(self, job_id: str) -> Optional[ChainJobState]:
        for j in self.jobs:
            if j.job_id == job_id:
                return j
        return None

    def log(self, at: float, kind: str, job_id: str, reason: str) -> None:
        self.events.append(ChainEvent(at=at, kind=kind, job_id=job_id, reason=reason))
        del self.events[:-EVENTS_KEPT]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": SCHEMA,
            "spec": dataclasses.asdict(self.spec),
            "jobs": [j.to_dict() for j in self.jobs],
            "template_job": self.template_job,
            "consecutive_failures": self.consecutive_failures,
            "last_failure_at": self.last_failure_at,
            "failure_signatures": list(self.failure_signatures),
            "stopped_at": self.stopped_at,
            "stop_reason": self.stop_reason,
            "events": [dataclasses.asdict(e) for e in self.events],
            "supervisor_pid": self.supervisor_pid,
            "heartbeat_at": self.heartbeat_at,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> ChainState:
        spec_names = {f.name for f in dataclasses.fields(KeepAliveSpec)}
        spec = KeepAliveSpec(**{k: v for k, v in (d.get("spec") or {}).items() if k in spec_names})
        return cls(
            spec=spec,
            jobs=[ChainJobState.from_dict(j) for j in d.get("jobs") or []],
            template_job=str(d.get("template_job") or ""),
            consecutive_failures=int(d.get("consecutive_failures") or 0),
            last_failure_at=d.get("last_failure_at"),
            failure_signatures=[str(s) for s in d.get("failure_signatures") or []],
            stopped_at=d.get("stopped_at"),
            stop_reason=str(d.get("stop_reason") or ""),
            events=[ChainEvent(**e) for e in d.get("events") or []],
            supervisor_pid=d.get("supervisor_pid"),
            heartbeat_at=d.get("heartbeat_at"),
        )


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.match(alias or "") or ".." in alias:
        raise PbsvllmError(f"alias {alias!r} cannot name a keep-alive file (allowed: letters, digits, . _ -)")
    return alias


class ChainStore:
    """``$PBSVLLM_HOME/keepalive/``: one chain file per alias."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.dir = os.path.join(home, "keepalive")

    def path(self, alias: str) -> str:
        return os.path.join(self.dir, f"{check_alias(alias)}.json")

    @contextlib.contextmanager
    def lock(self, alias: str) -> Iterator[None]:
        if not os.path.isdir(self.dir):
            makedirs_private(self.dir)
        fd = os.open(os.path.join(self.dir, f".{check_alias(alias)}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def load(self, alias: str) -> Optional[ChainState]:
        path = self.path(alias)
        try:
            with open(path, encoding="utf-8") as fh:
                return ChainState.from_dict(json.load(fh))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise PbsvllmError(
                f"keep-alive state {path} is unreadable: {exc}",
                hint="move it away and start the chain again (`pbsvllm keepalive start ALIAS`)",
            ) from None

    def save(self, state: ChainState) -> None:
        if not os.path.isdir(self.dir):
            makedirs_private(self.dir)
        atomic_write_text(self.path(state.alias),
                          json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n", 0o600)

    def aliases(self) -> List[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def all(self) -> List[Tuple[str, Optional[ChainState]]]:
        return [(a, self.load(a)) for a in self.aliases()]


@dataclasses.dataclass(frozen=True)
class Handover:
    """One hand-over of a chain, measured from the supervisor's own records."""

    from_job: str
    to_job: str
    successor_submitted_at: float
    successor_ready_at: float
    predecessor_drained_at: float
    overlap_s: float   # both servers ready (successor ready -> predecessor out of the alias)
    gap_s: float       # no server of the chain ready between the two (target 0)


def handovers(state: ChainState) -> List[Handover]:
    """The chain's completed hand-overs, in order (pure: from the chain file).

    A predecessor counts as serving until it was drained (taken out of the
    alias), or until its job ended when it was never drained.
    """
    out: List[Handover] = []
    for pred, succ in zip(state.jobs, state.jobs[1:]):
        if pred.end_cause != EndCause.HANDED_OVER or succ.ready_at is None or pred.ready_at is None:
            continue
        out_at = pred.drained_at if pred.drained_at is not None else (pred.ended_at or succ.ready_at)
        out.append(Handover(
            from_job=pred.job_id, to_job=succ.job_id, successor_submitted_at=succ.submitted_at,
            successor_ready_at=succ.ready_at, predecessor_drained_at=out_at,
            overlap_s=max(0.0, out_at - succ.ready_at), gap_s=max(0.0, succ.ready_at - out_at),
        ))
    return out
