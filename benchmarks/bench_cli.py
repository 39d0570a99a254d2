"""CLI cold start: ``pbsvllm --help`` and ``pbsvllm status`` (no jobs) against ``vec-inf --help``.

    .venv/bin/python benchmarks/bench_cli.py [--runs 30] [--warmup 3]

vec-inf (the closest peer, a click CLI too) is installed from PyPI into its
own virtual environment under ``~/.cache/pbsvllm-bench/vec-inf-venv``
(``PBSVLLM_BENCH_CACHE`` moves it), built with the same base Python as the
interpreter running this script, so both CLIs start the same interpreter.

Every round runs the three commands once each, in an order that rotates from
round to round, each as a fresh process (``subprocess.run``, wall time with
``time.perf_counter``). ``--warmup`` uncounted rounds come first, so the
files are in the page cache: this measures the start of a new Python
process with warm disk caches, which is what a user typing the command
twice sees, not the first run after a reboot. ``pbsvllm status`` runs with
``PBSVLLM_HOME`` set to an empty temporary folder (no jobs tracked).

It also records ``python -X importtime`` for each command once, and names
the modules that cost the most (to find why a start is slow).

Results: ``benchmarks/results/cli.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "cli.json")
TARGET_RATIO = 0.5


def cache_dir() -> str:
    return os.environ.get("PBSVLLM_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pbsvllm-bench")


def base_python() -> str:
    """The interpreter this venv was made from (so vec-inf runs on the same Python)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_vec_inf(venv: str) -> Tuple[str, str]:
    """(path of the vec-inf script, installed version); installs it on first use."""
    exe = os.path.join(venv, "bin", "vec-inf")
    py = os.path.join(venv, "bin", "python")
    if not os.access(exe, os.X_OK):
        print(f"installing vec-inf from PyPI into {venv} ...", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([base_python(), "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "vec-inf"], check=True)
    version = subprocess.run(
        [py, "-c", "import importlib.metadata as m; print(m.version('vec-inf'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return exe, version


def timed(argv: List[str], env: Dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (rc {proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
    return dt


def importtime(python: str, code: str, env: Dict[str, str], top: int = 8) -> Dict[str, object]:
    """Import cost of a command: total, and the costliest imports (cumulative, and by self time)."""
    proc = subprocess.run([python, "-X", "importtime", "-c", code], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        self_us, cum_us, name = parts
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((name.strip(), int(self_us), int(cum_us), depth))
    outer = [r for r in rows if r[3] == 0]  # imports made by the command itself (not nested)
    total_us = sum(r[2] for r in outer)
    by_cum = sorted(outer, key=lambda r: -r[2])[:top]
    by_self = sorted(rows, key=lambda r: -r[1])[:top]
    own = sorted((r for r in rows if r[0].startswith("pbsvllm")), key=lambda r: -r[2])[:top]
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    packages = sorted({r[0].split(".")[0] for r in rows} - set(stdlib)
                      - {"pbsvllm", "sitecustomize", "usercustomize", "org"})  # org: Jython probe in copy
    packages = [p for p in packages if not p.startswith("_")]
    return {
        "modules_imported": len(rows),
        "total_import_ms": round(total_us / 1000, 1),
        "top_cumulative_ms": {r[0]: round(r[2] / 1000, 1) for r in by_cum},
        "top_self_ms": {r[0]: round(r[1] / 1000, 1) for r in by_self},
        "pbsvllm_modules_cumulative_ms": {r[0]: round(r[2] / 1000, 1) for r in own},
        "third_party_packages": packages,
    }


def stats(xs: List[float]) -> Dict[str, float]:
    s = sorted(xs)
    return {
        "runs": len(s),
        "median_s": round(statistics.median(s), 4),
        "min_s": round(s[0], 4),
        "p10_s": round(s[max(0, int(len(s) * 0.1) - 1)], 4) if len(s) >= 10 else round(s[0], 4),
        "p90_s": round(s[min(len(s) - 1, int(round(len(s) * 0.9)) - 1)], 4),
        "mean_s": round(statistics.fmean(s), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="counted rounds (each runs the three commands once)")
    ap.add_argument("--warmup", type=int, default=3, help="uncounted rounds first")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()

    bindir = os.path.dirname(sys.executable)
    pbsvllm = os.path.join(bindir, "pbsvllm")
    if not os.access(pbsvllm, os.X_OK):
        raise SystemExit(f"{pbsvllm} not found: run this with the project venv's python (.venv/bin/python)")
    vec_venv = os.path.join(cache_dir(), "vec-inf-venv")
    vec_inf, vec_version = ensure_vec_inf(vec_venv)

    home = tempfile.mkdtemp(prefix="pbsvllm-bench-cli-home-")
    env = dict(os.environ)
    env["PBSVLLM_HOME"] = home
    env.pop("PBSVLLM_CONFIG", None)
    env.pop("PYTHONPATH", None)
    commands = {
        "pbsvllm --help": [pbsvllm, "--help"],
        "pbsvllm status (no jobs)": [pbsvllm, "status"],
        "vec-inf --help": [vec_inf, "--help"],
    }
    names = list(commands)
    times: Dict[str, List[float]] = {n: [] for n in names}
    try:
        for rnd in range(args.warmup + args.runs):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for n in order:
                dt = timed(commands[n], env)
                if rnd >= args.warmup:
                    times[n].append(dt)
        status_files = sorted(os.listdir(home))
        imports = {
            "pbsvllm --help": importtime(sys.executable, "import sys; sys.argv=['pbsvllm','--help']\n"
                                         "from pbsvllm.cli import main\nmain()", env),
            "pbsvllm status (no jobs)": importtime(sys.executable, "import sys; sys.argv=['pbsvllm','status']\n"
                                                   "from pbsvllm.cli import main\nmain()", env),
            "vec-inf --help": importtime(os.path.join(vec_venv, "bin", "python"),
                                         "import sys; sys.argv=['vec-inf','--help']\n"
                                         "from vec_inf.cli._cli import cli\ncli()", env),
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)

    figures = {n: stats(times[n]) for n in names}
    vec = figures["vec-inf --help"]["median_s"]
    ratios = {n: round(figures[n]["median_s"] / vec, 3) for n in names if n != "vec-inf --help"}
    # per-round ratios: how stable is the ratio on this noisy machine
    per_round = {
        n: stats([a / b for a, b in zip(times[n], times["vec-inf --help"])]) for n in ratios
    }
    result = {
        "benchmark": "cli",
        "title": "CLI cold start: pbsvllm vs vec-inf",
        "command": "python benchmarks/bench_cli.py --runs %d --warmup %d" % (args.runs, args.warmup),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "vec_inf_version": vec_version,
        "figures": figures,
        "ratio_of_medians_vs_vec_inf": ratios,
        "per_round_ratio_vs_vec_inf": {n: {"median": round(v["median_s"], 3), "p10": round(v["p10_s"], 3),
                                            "p90": round(v["p90_s"], 3)} for n, v in per_round.items()},
        "target_ratio_at_most": TARGET_RATIO,
        "meets_target": {n: r <= TARGET_RATIO for n, r in ratios.items()},
        "importtime": imports,
        "pbsvllm_home_after_status": status_files,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, args.out)
    for n in names:
        f = figures[n]
        extra = f"  ratio {ratios[n]:.2f} (target <= {TARGET_RATIO})" if n in ratios else ""
        print(f"{n:26s} median {f['median_s'] * 1000:6.0f} ms  (p10 {f['p10_s'] * 1000:.0f}, "
              f"p90 {f['p90_s'] * 1000:.0f}, n={f['runs']}){extra}")
    for n, imp in imports.items():
        top = ", ".join(f"{k} {v} ms" for k, v in list(imp["top_cumulative_ms"].items())[:4])
        print(f"imports of {n}: {imp['modules_imported']} modules, {imp['total_import_ms']} ms; costliest: {top}")
    print("->", os.path.relpath(args.out, ROOT))


if __name__ == "__main__":
    main()
