"""Parse throughput and peak memory of pbsvllm.vllmlog on a 1 GB vLLM log.

    .venv/bin/python benchmarks/bench_logparse.py [--size-mb 1024] [--keep-dir DIR]

The log is built in a temporary directory (deleted afterwards) from the real
vLLM 0.32 CPU logs in tests/data/vllm:

- ``long-run``: one real startup, then the real steady-state lines of the
  compiled run (uvicorn access lines, ``/metrics`` polls, an ``Engine 000``
  stats line every 10 s, vLLM's default interval) repeated up to the size,
  then the real shutdown. This is what a 1 GB log of a long-lived server is.
- ``stats-dense``: the same built from the DP=2 run, whose stats interval was
  2 s with two engines (one stats line per ~300 bytes): a stress case.
- ``restarts``: whole real logs (startup, traffic, shutdown) repeated: every
  ~40 KB a new server start whose lines are all examined. A worst case.

Each measurement runs in a fresh child process, so its peak RSS
(``ru_maxrss``) is the parser's own; tracemalloc peaks are measured on two
sizes to show memory does not grow with the log. Follow mode: after reading
the whole file, 1 MB is appended and ``LogFollower.poll()`` must read exactly
the appended bytes. Results go to benchmarks/results/logparse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "vllm")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "logparse.json")
MB = 1024 * 1024


def _read(name: str) -> bytes:
    with open(os.path.join(DATA, name), "rb") as fh:
        return fh.read()


def _split_run(name: str):
    """A real log cut into startup, steady traffic and shutdown."""
    log = _read(name)
    ready = log.index(b"\n", log.index(b"Application startup complete.")) + 1
    stop = log.rindex(b"\n", 0, log.index(b"shutdown triggered")) + 1
    return log[:ready], log[ready:stop], log[stop:]


def build_long_run(path: str, size: int, source: str = "vllm-0.32.0-cpu-compiled.log") -> None:
    """One real startup, the real steady traffic repeated, one shutdown."""
    head, steady, tail = _split_run(source)
    block = steady * max(1, (4 * MB) // len(steady))
    with open(path, "wb") as fh:
        fh.write(head)
        written = len(head)
        while written + len(block) + len(tail) <= size:
            fh.write(block)
            written += len(block)
        while written + len(steady) + len(tail) <= size:
            fh.write(steady)
            written += len(steady)
        fh.write(tail)


def build_restarts(path: str, size: int) -> None:
    logs = b"".join(
        _read(n)
        for n in (
            "vllm-0.32.0-cpu-compiled.log",
            "vllm-0.32.0-cpu-dp2-1apiserver.log",
            "vllm-0.32.0-cpu-eager.log",
            "vllm-0.32.0-cpu-dp2-2apiservers.log",
        )
    )
    if not logs.endswith(b"\n"):
        logs += b"\n"
    with open(path, "wb") as fh:
        written = 0
        while written + len(logs) <= size:
            fh.write(logs)
            written += len(logs)


CHILD = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from pbsvllm import vllmlog
mode, path = sys.argv[2], sys.argv[3]
out = {}
if mode == "tracemalloc":
    tracemalloc.start()
t0 = time.perf_counter()
c0 = time.process_time()
if mode == "lines":
    with open(path, "r", encoding="utf-8", errors="replace", newline="\n") as fh:
        facts = vllmlog.parse_log(fh)
else:
    facts = vllmlog.parse_file(path)
out["seconds"] = time.perf_counter() - t0
out["cpu_seconds"] = time.process_time() - c0
if mode == "tracemalloc":
    out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out["lines"] = facts.lines
out["engine_stats_lines"] = facts.engine_stats_lines
out["server_starts"] = facts.server_starts
out["parse_problems"] = facts.parse_problems
out["facts"] = facts.to_json_facts()
print(json.dumps(out))
"""


def run_child(mode: str, path: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, ROOT, mode, path], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise SystemExit(f"child {mode} on {path} failed (rc {res.returncode}):\n{res.stderr}")
    return json.loads(res.stdout)


def baseline_rss_kib() -> int:
    code = ("import resource,sys; sys.path.insert(0, sys.argv[1]); import pbsvllm.vllmlog; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    return int(subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True, check=True).stdout)


def measure(kind: str, path: str) -> dict:
    size = os.path.getsize(path)
    r = run_child("fast", path)
    r["bytes"] = size
    r["mb_per_s"] = round(size / MB / r["seconds"], 1)
    r["mb_per_cpu_s"] = round(size / MB / r["cpu_seconds"], 1)
    r["cpu_seconds"] = round(r["cpu_seconds"], 2)
    r["peak_rss_mib"] = round(r["ru_maxrss_kib"] / 1024, 1)
    r["seconds"] = round(r["seconds"], 2)
    r.pop("facts", None)
    r["kind"] = kind
    return r


def follow_check(path: str) -> dict:
    sys.path.insert(0, ROOT)
    from pbsvllm.vllmlog import LogFollower

    fl = LogFollower(path)
    t0 = time.perf_counter()
    fl.poll()
    first = time.perf_counter() - t0
    before_bytes, before_lines = fl.bytes_read, fl.facts.engine_stats_lines
    steady = _split_run("vllm-0.32.0-cpu-dp2-1apiserver.log")[1]
    chunk = steady * max(1, MB // len(steady))
    with open(path, "ab") as fh:
        fh.write(chunk)
    t1 = time.perf_counter()
    got = fl.poll()
    second = time.perf_counter() - t1
    read_now = fl.bytes_read - before_bytes
    return {
        "first_poll_seconds": round(first, 2),
        "appended_bytes": len(chunk),
        "second_poll_bytes_consumed": got,
        "second_poll_bytes_read": read_now,
        "second_poll_seconds": round(second, 4),
        "reads_only_new_bytes": read_now == len(chunk) and got == len(chunk),
        "new_stats_lines_seen": fl.facts.engine_stats_lines - before_lines,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--restarts-mb", type=int, default=64, help="size of the worst-case log (restarts)")
    ap.add_argument("--dense-mb", type=int, default=256, help="size of the stats-dense log")
    ap.add_argument("--baseline-mb", type=int, default=128, help="size for the line-by-line baseline")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pbsvllm-bench-logparse-")
    try:
        big = os.path.join(tmp, "long-run.log")
        build_long_run(big, args.size_mb * MB)
        small = os.path.join(tmp, "long-run-small.log")
        build_long_run(small, args.baseline_mb * MB)
        dense = os.path.join(tmp, "stats-dense.log")
        build_long_run(dense, args.dense_mb * MB, "vllm-0.32.0-cpu-dp2-1apiserver.log")
        worst = os.path.join(tmp, "restarts.log")
        build_restarts(worst, args.restarts_mb * MB)

        base_rss = baseline_rss_kib()
        long_run = measure("long-run", big)
        small_run = measure("long-run", small)
        restarts = measure("restarts", worst)
        dense_run = measure("stats-dense", dense)
        lines = run_child("lines", small)
        lines_mb_s = round(os.path.getsize(small) / MB / lines["seconds"], 1)
        lines_mb_cpu_s = round(os.path.getsize(small) / MB / lines["cpu_seconds"], 1)
        tm_small = run_child("tracemalloc", small)["tracemalloc_peak_bytes"]
        tm_big = run_child("tracemalloc", big)["tracemalloc_peak_bytes"]
        follow = follow_check(big)

        load = os.getloadavg()
        result = {
            "command": "python benchmarks/bench_logparse.py --size-mb %d" % args.size_mb,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average_1_5_15": [round(x, 2) for x in load],
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
            "interpreter_baseline_rss_mib": round(base_rss / 1024, 1),
            "long_run": long_run,
            "long_run_small": small_run,
            "stats_dense": dense_run,
            "restarts_worst_case": restarts,
            "line_by_line_parse_log_mb_per_s": lines_mb_s,
            "line_by_line_parse_log_mb_per_cpu_s": lines_mb_cpu_s,
            # CPU seconds: the two runs happen at different moments, and other work on the machine changes wall time
            "speedup_file_path_vs_line_path": round(small_run["mb_per_cpu_s"] / lines_mb_cpu_s, 1),
            "tracemalloc_peak_mib": {
                "%d MB log" % args.baseline_mb: round(tm_small / MB, 2),
                "%d MB log" % args.size_mb: round(tm_big / MB, 2),
            },
            "follow": follow,
            "targets": {"mb_per_s": 100, "peak_memory_mib": 200},
            "meets_targets": long_run["mb_per_s"] >= 100 and long_run["peak_rss_mib"] < 200,
            "meets_targets_cpu_time": long_run["mb_per_cpu_s"] >= 100 and long_run["peak_rss_mib"] < 200,
            "notes": [
                "long-run: one real vLLM 0.32 startup, then the real traffic of the compiled CPU run (uvicorn access "
                "lines, /metrics polls, one 'Engine 000' stats line per 10 s) repeated to the size: a long-lived "
                "server.",
                "stats-dense: the DP=2 run's traffic (2 s stats interval, two engines: a stats line per ~300 bytes).",
                "restarts: whole real logs repeated, a server start every ~40 KB whose startup lines are all examined.",
                "Throughput is measured in a fresh child process per case; 'CPU time' divides by that process's CPU "
                "seconds, which is what the parser costs when other work shares the machine "
                f"(load average during the run: {', '.join(str(round(x, 1)) for x in load)} "
                f"on {os.cpu_count()} cores).",
            ],
        }
        ref_path = os.path.join(os.path.dirname(RESULTS), "logparse-reference.json")
        if os.path.exists(ref_path):
            with open(ref_path) as fh:
                ref = json.load(fh)
            rl = ref.get("long_run", {})
            result["reference_unloaded"] = {k: ref.get(k) for k in ("date", "machine", "measured_on", "long_run",
                                                                    "stats_dense", "restarts_worst_case")}
            result["notes"].append(
                f"Reference run on {ref.get('measured_on', 'another machine')}: long-run {rl.get('mb_per_s')} MB/s "
                f"({rl.get('mb_per_cpu_s')} MB/s per CPU second), peak RSS {rl.get('peak_rss_mib')} MiB "
                f"(benchmarks/results/logparse-reference.json).")
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        tmpres = RESULTS + ".tmp"
        with open(tmpres, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        os.replace(tmpres, RESULTS)
        print(f"long-run log {long_run['bytes'] / MB:.0f} MB, {long_run['lines']:,} lines: "
              f"{long_run['mb_per_s']} MB/s ({long_run['mb_per_cpu_s']} per CPU second), "
              f"peak RSS {long_run['peak_rss_mib']} MiB "
              f"(interpreter alone {result['interpreter_baseline_rss_mib']} MiB)")
        print(f"stats-dense {dense_run['bytes'] / MB:.0f} MB, {dense_run['engine_stats_lines']:,} stats lines: "
              f"{dense_run['mb_per_s']} MB/s, peak RSS {dense_run['peak_rss_mib']} MiB")
        print(f"restarts (worst case) {restarts['bytes'] / MB:.0f} MB, {restarts['server_starts']:,} server starts: "
              f"{restarts['mb_per_s']} MB/s, peak RSS {restarts['peak_rss_mib']} MiB")
        print(f"line-by-line parse_log: {lines_mb_s} MB/s ({lines_mb_cpu_s} per CPU second); file path is "
              f"{result['speedup_file_path_vs_line_path']}x faster per CPU second")
        print(f"tracemalloc peak: {result['tracemalloc_peak_mib']}")
        print(f"follow: appended {follow['appended_bytes']} B, poll read {follow['second_poll_bytes_read']} B "
              f"in {follow['second_poll_seconds']} s (only new bytes: {follow['reads_only_new_bytes']})")
        print(f"targets met (>=100 MB/s, <200 MiB): {result['meets_targets']}   -> {os.path.relpath(RESULTS, ROOT)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
