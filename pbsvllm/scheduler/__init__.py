"""Scheduler backends behind one seam (see :mod:`pbsvllm.scheduler.base`).

``get_scheduler(name, transport)`` with name ``pbspro``, ``torque``,
``slurm-torque`` (Slurm's Debian Torque wrappers), ``local`` (no scheduler:
run on this machine) or ``auto`` (detect what answers on the transport's host).
"""

from __future__ import annotations

from typing import Any, Optional

from pbsvllm.errors import ConfigError
from pbsvllm.scheduler.base import JobStatus, Scheduler, SubmitOptions, interpret_exit_status
from pbsvllm.transport.base import Transport

__all__ = ["JobStatus", "Scheduler", "SubmitOptions", "get_scheduler", "interpret_exit_status", "NAMES"]

NAMES = ("pbspro", "torque", "slurm-torque", "local", "auto")
_ALIASES = {"pbs": "pbspro", "openpbs": "pbspro", "pbs_pro": "pbspro", "slurm": "slurm-torque", "none": "local"}


def get_scheduler(name: Optional[str], transport: Transport, **opts: Any) -> Scheduler:
    """The backend ``name`` on ``transport``. Options (``home``, ``retries``,
    ``backoff_s``, ``sleep``, ``timeout_s`` (the caller's overall time limit:
    no scheduler command runs past it), ``grace_s`` for local) go to the backend."""
    key = (name or "auto").strip().lower()
    key = _ALIASES.get(key, key)
    if key == "auto":
        from pbsvllm.scheduler.detect import detect

        limit = opts.get("timeout_s")
        key = detect(transport, timeout=30.0 if limit is None else max(0.1, min(30.0, float(limit))))
        if key == "local" and not transport.is_local:
            raise ConfigError(
                f"no scheduler answered on {transport.host}: `qstat` is not on the PATH of a"
                " non-interactive shell there",
                hint="add the PBS bin folder to PATH in ~/.bashrc on that host, or pass --scheduler pbspro|torque",
            )
    if key == "pbspro":
        from pbsvllm.scheduler.pbspro import PBSProScheduler

        opts.pop("home", None), opts.pop("grace_s", None)
        return PBSProScheduler(transport, **opts)
    if key == "torque":
        from pbsvllm.scheduler.torque import TorqueScheduler

        opts.pop("home", None), opts.pop("grace_s", None)
        return TorqueScheduler(transport, **opts)
    if key == "slurm-torque":
        from pbsvllm.scheduler.torque import SlurmTorqueScheduler

        opts.pop("home", None), opts.pop("grace_s", None)
        return SlurmTorqueScheduler(transport, **opts)
    if key == "local":
        from pbsvllm.scheduler.local import LocalScheduler

        return LocalScheduler(transport, **opts)
    raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(NAMES)}")
