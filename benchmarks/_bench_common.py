"""Helpers shared by bench_status.py and bench_ssh.py (not a benchmark itself)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def machine() -> Dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def write_result(name: str, doc: Dict[str, Any]) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    doc.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    doc.setdefault("machine", machine())
    path = os.path.join(RESULTS, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def median_time(fn: Callable[[], Any], repeat: int = 5) -> float:
    times: List[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def slurm_up() -> str:
    """Bring up (or reuse) the Slurm stand-in; returns SLURM_CONF."""
    out = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "slurm-up.sh")], capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("SLURM_CONF=")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the Slurm stand-in did not come up: {out.stdout}\n{out.stderr}")
    conf = lines[-1].split("=", 1)[1]
    os.environ["SLURM_CONF"] = conf
    return conf


def submit_held(n: int, name: str) -> List[str]:
    """n held (never running) Slurm jobs, submitted with sbatch directly (fast)."""
    ids = []
    for _ in range(n):
        r = subprocess.run(["sbatch", "--hold", "-J", name, "-t", "5", "-o", "/dev/null", "--wrap", "true"],
                           capture_output=True, text=True, check=True, timeout=60)
        ids.append(r.stdout.split()[-1])
    return ids


def cancel_by_name(name: str) -> None:
    subprocess.run(["scancel", "-n", name], capture_output=True, timeout=120)
