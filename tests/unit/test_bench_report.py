"""benchmarks/render_report.py: every benchmark is shown, whatever state its run is in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def render(tmp_path, runs, files):
    res = tmp_path / "results"
    (res / "logs").mkdir(parents=True)
    for name, obj in files.items():
        (res / name).write_text(obj if isinstance(obj, str) else json.dumps(obj))
    (res / "_runs.json").write_text(json.dumps({"updated_at": "2026-11-28T20:30:00Z", "scripts": runs,
                                                "machine": {"cpu": "Test CPU", "cpus": 2, "gpu": "none"}}))
    out = tmp_path / "performance.md"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "render_report.py"), "--results", str(res),
                    "--out", str(out)], check=True, capture_output=True, text=True)
    return out.read_text()


def section(text, title):
    start = text.index(title)
    nxt = text.find("\n## ", start + 1)
    return text[start:nxt if nxt > 0 else None]


def test_report_shows_ok_failed_missing_and_unknown_shapes(tmp_path):
    cli = {
        "command": "python benchmarks/bench_cli.py --runs 30 --warmup 3", "date": "2026-11-28T20:31:00Z",
        "vec_inf_version": "0.9.0",
        "figures": {"pbsvllm --help": {"runs": 30, "median_s": 0.2, "p10_s": 0.18, "p90_s": 0.25},
                    "vec-inf --help": {"runs": 30, "median_s": 1.0, "p10_s": 0.9, "p90_s": 1.2}},
        "ratio_of_medians_vs_vec_inf": {"pbsvllm --help": 0.2},
        "per_round_ratio_vs_vec_inf": {"pbsvllm --help": {"median": 0.21, "p10": 0.19, "p90": 0.24}},
        "target_ratio_at_most": 0.5, "meets_target": {"pbsvllm --help": True},
        "importtime": {},
    }
    runs = {
        "bench_cli": {"status": "ok", "rc": 0, "seconds": 60.0, "results": ["cli.json"], "ran_at": "now",
                      "log": "x"},
        "bench_status": {"status": "failed", "rc": 1, "seconds": 3.0, "results": [], "ran_at": "now",
                         "log": "benchmarks/results/logs/none.log"},
        "bench_ssh": {"status": "missing", "rc": None, "seconds": 0, "results": [], "ran_at": "now", "log": "x"},
        "bench_readiness": {"status": "ok", "rc": 0, "seconds": 5.0, "results": ["readiness.json"],
                            "ran_at": "now", "log": "x"},
    }
    weird = {"command": "python benchmarks/bench_readiness.py", "headline": "median 0.4 s",
             "latency_s": {"median": 0.4, "runs": [0.3, 0.4, 0.5]}, "notes": ["one note"]}
    text = render(tmp_path, runs, {"cli.json": cli, "readiness.json": weird})

    assert "| cpu | Test CPU |" in text
    s = section(text, "## 1. CLI cold start")
    assert "| `pbsvllm --help` | 200 ms | 180 ms | 250 ms | 30 | 0.2 | 0.21 (0.19–0.24) |" in s
    assert "`pbsvllm --help`: met" in s and "What it does not say" in s
    assert "status: **failed (rc 1)**" in section(text, "## 2. Status at scale")
    assert "status: **missing" in section(text, "## 3. SSH")
    s = section(text, "## 5. Readiness")
    assert "| `latency_s.median` | 0.4 |" in s and "- one note" in s
    assert "median 0.4 s" in section(text, "## Summary")
    # a benchmark that never ran is listed too, never dropped
    assert "## 6. The value of the plan" in text
    assert "## 4. Log parsing" in text


def test_report_survives_a_result_of_an_unexpected_shape(tmp_path):
    runs = {"bench_cli": {"status": "ok", "rc": 0, "seconds": 1.0, "results": ["cli.json"], "ran_at": "now",
                          "log": "x"}}
    text = render(tmp_path, runs, {"cli.json": {"figures": "not a dict", "x": 1}})
    s = section(text, "## 1. CLI cold start")
    assert "not the one the report expects" in s and "| `x` | 1 |" in s
