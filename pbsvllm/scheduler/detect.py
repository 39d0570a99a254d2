"""Which scheduler answers on the target host: PBS Pro, Torque, Slurm's
Torque wrappers, or none (the embedded local backend).

Two commands at most: ``qstat --version`` (PBS Pro prints ``pbs_version =``,
Torque ``Version:``), then, only if qstat exists but is neither,
``scontrol --version`` (Slurm's wrappers reject ``--version``).
"""

from __future__ import annotations

from pbsvllm.errors import TransportError
from pbsvllm.transport.base import Transport


def detect(transport: Transport, timeout: float = 30.0) -> str:
    """Return ``pbspro``, ``torque``, ``slurm-torque`` or ``local``."""
    rc, out, err = transport.run(["qstat", "--version"], timeout=timeout)
    text = f"{out}\n{err}"
    low = text.lower()
    if rc == 127:
        return "local"
    if "pbs_version" in low:
        return "pbspro"
    if "version:" in low and "torque" in low or low.strip().startswith("version:"):
        return "torque"
    if "unknown option" in low or "usage:" in low:
        rc2, out2, _ = transport.run(["scontrol", "--version"], timeout=timeout)
        if rc2 == 0 and "slurm" in out2.lower():
            return "slurm-torque"
        return "torque"
    if "version" in low:
        return "torque"
    raise TransportError(
        f"cannot tell which scheduler runs on {transport.host}: `qstat --version` exited {rc}: {text.strip()[:300]}",
        hint="pass --scheduler pbspro|torque|local or set `scheduler` in the profile",
    )
