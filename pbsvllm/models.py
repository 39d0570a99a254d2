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
