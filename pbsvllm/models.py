"""Shared value types: job and server states.

Pure data, no I/O. Each scheduler backend maps its own letters onto
:class:`JobState` through a declarative table (see ``pbsvllm.scheduler``).
Job state (what the scheduler says) and server state (what the vLLM server
says) are kept apart on purpose.
"""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    PENDING = "PENDING"        # Q, W, T
    HELD = "HELD"              # H, S, U
    RUNNING = "RUNNING"        # R, B
    COMPLETING = "COMPLETING"  # E
    COMPLETED = "COMPLETED"    # F, X, C (exit status tells success from failure)
    FAILED = "FAILED"          # finished with a non-zero / negative exit status
    CANCELLED = "CANCELLED"    # finished because we (or someone) deleted it
    UNKNOWN = "UNKNOWN"        # M, or the scheduler no longer knows the job

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    @property
    def is_active(self) -> bool:
        return self in (JobState.PENDING, JobState.HELD, JobState.RUNNING, JobState.COMPLETING)


class ServerState(str, enum.Enum):
    NONE = "none"          # job not running yet
    STARTING = "starting"  # process up, not ready
    READY = "ready"        # /v1/models lists the model AND a 1-token completion succeeded
    FAILED = "failed"      # the log or the job's end says it failed
    STOPPED = "stopped"    # job ended after having been ready
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to this server (failed, or its job ended)."""
        return self in (ServerState.FAILED, ServerState.STOPPED)

    @classmethod
    def parse(cls, value: object) -> ServerState:
        """A stored value as a state (``UNKNOWN`` for one this version does not know)."""
        try:
            return cls(value or cls.NONE.value)
        except ValueError:
            return cls.UNKNOWN


class Phase(str, enum.Enum):
    """Where a job's server is on its way up (one vocabulary for the watcher,
    the job record, ``status`` and the log parser's startup phases).

    The first five come from the scheduler and the log; ``LOG_READY`` means
    the log says the API server is up but the probe has not confirmed it yet;
    ``READY``/``FAILED``/``STOPPED`` are outcomes. The log-derived values are
    exactly the phase names :func:`pbsvllm.vllmlog.detect_phase` returns.
    """

    SUBMITTED = "submitted"
    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    STARTING = "starting"
    LOADING_WEIGHTS = "loading_weights"
    COMPILING = "compiling"
    KV_CACHE_ALLOCATED = "kv_cache_allocated"
    LOG_READY = "log_ready"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting_down"

    @property
    def label(self) -> str:
        """How the phase reads on a terminal."""
        return _PHASE_LABELS.get(self, self.value)

    @property
    def rank(self) -> int:
        """Position on the way up (phases only move forward); -1 for the
        outcomes and ``LOG_READY``, which are not ordered this way."""
        try:
            return _STARTUP_ORDER.index(self)
        except ValueError:
            return -1

    @classmethod
    def parse(cls, value: object, default: Phase) -> Phase:
        """``value`` as a phase; ``default`` for anything unknown (a record
        written by a newer version)."""
        try:
            return cls(value)
        except ValueError:
            return default


_PHASE_LABELS = {
    Phase.LOADING_WEIGHTS: "loading weights",
    Phase.COMPILING: "compiling / capturing graphs",
    Phase.KV_CACHE_ALLOCATED: "KV cache allocated",
    Phase.SHUTTING_DOWN: "shutting down",
}
_STARTUP_ORDER = (Phase.SUBMITTED, Phase.QUEUED, Phase.HELD, Phase.RUNNING, Phase.STARTING,
                  Phase.LOADING_WEIGHTS, Phase.COMPILING, Phase.KV_CACHE_ALLOCATED)
