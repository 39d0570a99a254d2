"""The real Slurm stand-in (slurm-wlm + slurm-wlm-torque's qsub/qstat/qdel).

``slurm_cluster`` (session) runs ``scripts/slurm-up.sh``, which reuses a
cluster already started from the same config (several test runs share it)
or starts munged, slurmctld and slurmd itself. The cluster is left running
at the end (another run may be using it; stop it with
``bash scripts/slurm-up.sh --down``). If it cannot come up the tests that
need it FAIL with the script's output; they never skip.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class SlurmCluster:
    conf: str
    dir: str


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    if not shutil.which("qsub") or not shutil.which("slurmctld"):
        pytest.fail("the Slurm stand-in is not installed: run `bash scripts/setup-system.sh` (slurm-wlm, slurm-wlm-torque, munge)")
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "slurm-up.sh")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SLURM_CONF=")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"the Slurm stand-in did not come up (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    conf = lines[-1].split("=", 1)[1]
    os.environ["SLURM_CONF"] = conf  # qsub/qstat/qdel of this run and its children
    return SlurmCluster(conf=conf, dir=os.path.dirname(conf))
