"""Registry write latency: one locked, verified, atomic register() per format,
on a small file (3 other aliases) and a large one (300 other aliases).

    .venv/bin/python benchmarks/bench_registry_write.py [repeats]

Prints the median and p90 in milliseconds per format and size (each write:
lock, parse, render, re-parse in memory, temp file + fsync + rename, .bak,
read back and parse again).
"""

import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pbsvllm.registry import Endpoint, open_registry  # noqa: E402


def run(name: str, others: int, repeats: int) -> list:
    with tempfile.TemporaryDirectory() as d:
        reg = open_registry(os.path.join(d, name))
        text = ""
        for i in range(others):
            text = reg.render(text, f"keep{i}", [Endpoint(f"keep{i}", "m", f"http://keep{i}:8000/v1")])
        with open(reg.path, "w") as fh:
            fh.write(text)
        times = []
        for i in range(repeats):
            ep = Endpoint("bench", "tiny", f"http://node{i % 7}:{8000 + i}/v1", job_id=str(i))
            t0 = time.perf_counter()
            reg.register(ep)
            times.append((time.perf_counter() - t0) * 1000)
        return times


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    print(f"{'format':<16} {'others':>6} {'median ms':>10} {'p90 ms':>8}")
    for name in ("endpoints.toml", "endpoints.py", "config.yaml", "endpoints.json"):
        for others in (3, 300):
            t = sorted(run(name, others, repeats))
            print(f"{name:<16} {others:>6} {statistics.median(t):>10.2f} {t[int(len(t) * 0.9)]:>8.2f}")


if __name__ == "__main__":
    main()
