"""One fake scheduler: the scheduler seam (``name``, ``status(ids)``) answered from a script."""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from pbsvllm.scheduler.base import JobStatus

Timeline = Mapping[str, Sequence[Tuple[float, JobStatus]]]
Failure = Union[BaseException, Callable[[float], Optional[BaseException]]]


class FakeScheduler:
    """``status(ids)`` answers each job from its timeline -- ``(from_time, JobStatus)`` pairs read at
    ``clock()``, ``None`` before the first -- or, for a job without one, from ``default(job_id)``.
    ``fail`` (an exception, or ``t -> exception or None``) makes a call raise instead. Every call is
    recorded in :attr:`calls` as ``(time, ids)``."""

    def __init__(
        self,
        timeline: Optional[Timeline] = None,
        *,
        clock: Callable[[], float] = lambda: 0.0,
        default: Optional[Callable[[str], Optional[JobStatus]]] = None,
        fail: Optional[Failure] = None,
        name: str = "fake",
    ) -> None:
        self.timeline = timeline or {}
        self.clock = clock
        self.default = default
        self.fail = fail
        self.name = name
        self.calls: List[Tuple[float, List[str]]] = []

    @property
    def asked(self) -> List[List[str]]:
        """The ids of each call, in order."""
        return [ids for _t, ids in self.calls]

    def status(self, ids: Sequence[str]) -> Dict[str, Optional[JobStatus]]:
        now = self.clock()
        self.calls.append((now, list(ids)))
        exc = self.fail(now) if callable(self.fail) and not isinstance(self.fail, BaseException) else self.fail
        if exc is not None:
            raise exc
        out: Dict[str, Optional[JobStatus]] = {}
        for jid in ids:
            if jid in self.timeline:
                cur = None
                for t, st in self.timeline[jid]:
                    if now >= t:
                        cur = st
                out[jid] = cur
            elif self.default is not None:
                out[jid] = self.default(jid)
        return out
