"""Summarise one scripts/gpu-run.sh work folder as JSON (run there, and here on the kept copy).

    python3 scripts/gpu_summary.py WORKDIR

Reads what the phase left in WORKDIR: ``plan*.json`` (the planner's
prediction), ``server-*.log`` (the real vLLM logs: KV cache size, available
KV memory, weights, CUDA-graph memory, start-up times) and
``bench-*-cC.json`` (``pbsvllm bench --vs`` results), and prints one JSON
object: per server the measured figures against the plan's prediction, and
per bench pair the figures of both sides and the ratio B/A per concurrency.
Standard library only.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional

KV_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
KV_GIB = re.compile(r"Available KV cache memory: ([\d.]+) ?GiB")
LOAD = re.compile(r"Model loading took ([\d.]+) ?GiB(?: memory)? and ([\d.]+) ?s")
GRAPH = re.compile(r"Graph capturing finished in ([\d.]+) secs?, took ([\d.\-]+) GiB")
INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) ?s")
COMPILE = re.compile(r"torch\.compile takes ([\d.]+) ?s in total")
CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
VERSION = re.compile(r"vLLM API server version ([\w.+-]+)")
FIGURES = ("output_tokens_per_s", "requests_per_s", "ttft_p50_s", "ttft_p99_s", "latency_p50_s", "latency_p99_s")


def _last(rx: re.Pattern[str], text: str) -> Optional[re.Match[str]]:
    found = list(rx.finditer(text))
    return found[-1] if found else None


def server_facts(text: str) -> Dict[str, Any]:
    """The memory and start-up figures of one vLLM log."""
    out: Dict[str, Any] = {}
    m = _last(KV_TOKENS, text)
    if m:
        out["kv_cache_tokens"] = int(m.group(1).replace(",", ""))
    m = _last(KV_GIB, text)
    if m:
        out["available_kv_gib"] = float(m.group(1))
    m = _last(LOAD, text)
    if m:
        out["weights_gib"], out["load_seconds"] = float(m.group(1)), float(m.group(2))
    m = _last(GRAPH, text)
    if m:
        out["graph_capture_seconds"], out["graph_gib"] = float(m.group(1)), float(m.group(2))
    m = _last(INIT, text)
    if m:
        out["engine_init_seconds"] = float(m.group(1))
    m = _last(COMPILE, text)
    if m:
        out["torch_compile_seconds"] = float(m.group(1))
    m = _last(CONCURRENCY, text)
    if m:
        out["max_concurrency"] = {"tokens_per_request": int(m.group(1).replace(",", "")), "x": float(m.group(2))}
    m = _last(VERSION, text)
    if m:
        out["vllm_version"] = m.group(1)
    return out


def plan_facts(path: str) -> Dict[str, Any]:
    with open(path) as fh:
        p = json.load(fh)
    return {"kv_cache_tokens": p.get("kv_cache_tokens"), "gpu_memory_utilization": p.get("gpu_memory_utilization"),
            "memory": p.get("memory"), "vllm_args": p.get("vllm_args"),
            "tensor_parallel_size": p.get("tensor_parallel_size"), "data_parallel_size": p.get("data_parallel_size")}


def kv_error(predicted: Optional[int], measured: Optional[int]) -> Optional[float]:
    """(predicted - measured) / measured, e.g. 0.03 = the plan predicted 3% more tokens than vLLM has."""
    if not predicted or not measured:
        return None
    return round((predicted - measured) / measured, 4)


def bench_pairs(workdir: str) -> Dict[str, Any]:
    pairs: Dict[str, Any] = {}
    for path in sorted(glob.glob(os.path.join(workdir, "bench-*-c*.json"))):
        m = re.match(r"bench-(.+)-c(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            pairs.setdefault(m.group(1), {"levels": []})["levels"].append(
                {"concurrency": int(m.group(2)), "error": f"unreadable: {exc}"})
            continue
        runs = doc.get("runs", [])
        if len(runs) != 2:
            continue
        a, b = runs
        for lv_a, lv_b in zip(a["levels"], b["levels"]):
            row: Dict[str, Any] = {"concurrency": lv_a["concurrency"], "requests": lv_a["requests"]}
            for side, lv in (("a", lv_a), ("b", lv_b)):
                row[side] = {k: lv.get(k) for k in FIGURES + ("ok", "errors", "mean_prompt_tokens",
                                                               "mean_output_tokens", "duration_s")}
            row["ratio_b_over_a"] = {
                k: (round(lv_b[k] / lv_a[k], 3) if lv_a.get(k) and lv_b.get(k) is not None else None)
                for k in FIGURES}
            pairs.setdefault(m.group(1), {"levels": []})["levels"].append(row)
    for p in pairs.values():
        p["levels"].sort(key=lambda r: r["concurrency"])
    return pairs


def summarize(workdir: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"workdir": os.path.basename(os.path.abspath(workdir))}
    vv = os.path.join(workdir, "vllm-version")
    if os.path.exists(vv):
        out["vllm_version"] = open(vv).read().strip()
    probe = os.path.join(workdir, "probe.json")
    if os.path.exists(probe):
        with open(probe) as fh:
            out["hardware"] = json.load(fh).get("planner_hardware")
    plans = {os.path.basename(p)[:-5]: plan_facts(p) for p in sorted(glob.glob(os.path.join(workdir, "plan*.json")))}
    out["plans"] = plans
    servers: Dict[str, Any] = {}
    for path in sorted(glob.glob(os.path.join(workdir, "server-*.log"))):
        name = os.path.basename(path)[len("server-"):-len(".log")]
        with open(path, errors="replace") as fh:
            servers[name] = server_facts(fh.read())
    out["servers"] = servers
    # the planner's prediction against the server that ran with the plan's utilisation
    checks: List[Dict[str, Any]] = []
    for server, plan_name in (("submit", "plan"), ("plan", "plan-at-util")):
        s, p = servers.get(server, {}), plans.get(plan_name, {})
        if s.get("kv_cache_tokens") and p.get("kv_cache_tokens"):
            checks.append({"server": server, "plan": plan_name, "gpu_memory_utilization": p["gpu_memory_utilization"],
                           "predicted_tokens": p["kv_cache_tokens"], "measured_tokens": s["kv_cache_tokens"],
                           "error": kv_error(p["kv_cache_tokens"], s["kv_cache_tokens"]),
                           "predicted_memory": p.get("memory"), "measured": s})
    out["kv_checks"] = checks
    out["bench"] = bench_pairs(workdir)
    return out


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: gpu_summary.py WORKDIR\n")
        return 2
    json.dump(summarize(argv[1]), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
