"""bench --plot and doctor --format html: one self-contained page each, checked by
what the charts hold (the traces plotly draws), not by how they look."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any, Dict, List, Optional

import pytest

from pbsvllm import plots, vllmlog
from pbsvllm.errors import ConfigError
from tests.paths import DATA, EXAMPLES, ROOT
from tests.unit.test_bench import fake_server  # noqa: F401  (a fixture: the fake OpenAI server)

DOCTOR_LOG = os.path.join(EXAMPLES, "doctor", "qwen3-vl-tp4-eager.log")
RECORDED_BENCH = os.path.join(DATA, "bench", "tiny-cpu-eager-vs-compiled.json")


def figures(page: str) -> List[Dict[str, Any]]:
    """Every Plotly.newPlot(id, data, layout, config) call of a page, decoded."""
    dec = json.JSONDecoder()
    out = []
    for m in re.finditer(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", page):
        data, end = dec.raw_decode(page, m.end())
        rest = page[end:].lstrip().lstrip(",").lstrip()
        layout, _ = dec.raw_decode(rest)
        out.append({"data": data, "layout": layout})
    return out


def embedded_data(page: str) -> Dict[str, Any]:
    m = re.search(r"<script type='application/json' id='pbsvllm-data'>(.*?)</script>", page, re.S)
    assert m, "no pbsvllm-data block"
    return json.loads(m.group(1))


def assert_offline(page: str) -> None:
    """Nothing is fetched: no external script, stylesheet, font or image."""
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    assert not re.search(r"<img[^>]+src=['\"]?https?:", page)
    assert "@import" not in page.split("<style>")[1].split("</style>")[0]
    assert page.count("plotly.js v") >= 1  # the library itself is inlined


def level(c: int, tps: float, p50: float, p99: float, ttft: float) -> Dict[str, Any]:
    return {"concurrency": c, "requests": 10, "ok": 10, "errors": {}, "duration_s": 1.0, "requests_per_s": tps / 32,
            "output_tokens_per_s": tps, "ttft_p50_s": ttft, "ttft_p99_s": ttft * 2, "latency_p50_s": p50,
            "latency_p99_s": p99, "mean_prompt_tokens": 32.0, "mean_output_tokens": 32.0, "error_examples": {}}


REPORT = {
    "started_at": "2026-12-07T05:00:00Z",
    "settings": {"n": 10, "concurrency": [1, 4]},
    "runs": [
        {"target": {"name": "base", "urls": ["http://127.0.0.1:1/v1"], "model": "tiny"},
         "levels": [level(1, 100.0, 0.3, 0.4, 0.05), level(4, 300.0, 0.5, 0.9, 0.1)]},
        {"target": {"name": "tuned", "urls": ["http://127.0.0.1:2/v1"], "model": "tiny"},
         "levels": [level(1, 150.0, 0.2, 0.3, 0.04), level(4, 420.0, 0.35, 0.6, 0.08)]},
    ],
    "comparison": {"ratio": "tuned / base", "levels": [{"concurrency": 1, "ratios": {"output_tokens_per_s": 1.5}},
                                                       {"concurrency": 4, "ratios": {"output_tokens_per_s": 1.4}}]},
}


def test_bench_page_holds_both_targets_throughput_and_latency():
    page = plots.bench_html(REPORT)
    assert_offline(page)
    (fig,) = figures(page)
    by = {(t["meta"]["target"], t["meta"]["figure"]): t for t in fig["data"]}
    assert by[("base", "output_tokens_per_s")]["x"] == [1, 4]
    assert by[("base", "output_tokens_per_s")]["y"] == [100.0, 300.0]
    assert by[("tuned", "output_tokens_per_s")]["y"] == [150.0, 420.0]
    assert by[("tuned", "latency_p99_s")]["y"] == [0.3, 0.6]
    assert by[("base", "ttft_p50_s")]["y"] == [0.05, 0.1]
    # throughput on the left axes, latency on the right, both against concurrency on a log axis
    assert by[("base", "output_tokens_per_s")].get("xaxis", "x") == "x"
    assert by[("base", "latency_p50_s")]["xaxis"] == "x2"
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["xaxis2"]["type"] == "log"
    assert "<h1>pbsvllm bench: base vs tuned</h1>" in page
    assert "1.50x" in page and "tuned / base" in page
    assert [t["name"] for t in embedded_data(page)["targets"]] == ["base", "tuned"]


def test_bench_report_that_is_not_one_is_refused_with_the_key():
    with pytest.raises(ConfigError, match="key 'runs'"):
        plots.bench_html({"levels": []})
    bad = json.loads(json.dumps(REPORT))
    bad["runs"][0]["levels"][1]["output_tokens_per_s"] = "fast"
    with pytest.raises(ConfigError, match=r"runs\[0\]\.levels\[1\]\.output_tokens_per_s"):
        plots.bench_html(bad)


def test_text_in_the_page_is_escaped():
    hostile = json.loads(json.dumps(REPORT))
    hostile["runs"][0]["target"]["name"] = "<script>alert(1)</script>"
    page = plots.bench_html(hostile)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_committed_bench_example_is_the_recorded_report():
    with open(RECORDED_BENCH, encoding="utf-8") as fh:
        report = json.load(fh)
    with open(os.path.join(EXAMPLES, "bench", "eager-vs-compiled.html"), encoding="utf-8") as fh:
        page = fh.read()
    assert_offline(page)
    strip = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert strip.sub("ID", page) == strip.sub("ID", plots.bench_html(report))
    (fig,) = figures(page)
    for run in report["runs"]:
        name = run["target"]["name"]
        tput = next(t for t in fig["data"] if t["meta"] == {"target": name, "figure": "output_tokens_per_s"})
        assert tput["x"] == [lv["concurrency"] for lv in run["levels"]]
        assert tput["y"] == pytest.approx([lv["output_tokens_per_s"] for lv in run["levels"]])


def _diagnosis(log: str = DOCTOR_LOG):
    from pbsvllm import doctor

    facts = vllmlog.parse_file(log)
    node = doctor.node_shape(facts, None, 4, 40.0, "pcie", None)
    return facts, doctor.diagnose(facts, node, plan=None, plan_req=None, plan_error="no plan in this test",
                                  log_path=log)


def test_doctor_page_timelines_are_the_logs_stats_lines_and_findings_sit_beside_them():
    facts, diag = _diagnosis()
    page = plots.doctor_html(diag)
    assert_offline(page)
    (fig,) = figures(page)
    stats = [vllmlog.parse_stats_line(line) for line in open(DOCTOR_LOG, encoding="utf-8")]
    stats = [s for s in stats if s is not None]
    assert len(stats) == 31
    trace = {t["meta"]["figure"]: t for t in fig["data"]}
    assert trace["kv_cache_usage_pct"]["y"] == [s.kv_cache_usage_pct for s in stats]
    assert trace["running"]["y"] == [s.running for s in stats]
    assert trace["waiting"]["y"] == [s.waiting for s in stats]
    assert trace["generation_tokens_per_s"]["y"] == [s.generation_tokens_per_s for s in stats]
    assert trace["prompt_tokens_per_s"]["y"] == [s.prompt_tokens_per_s for s in stats]
    # x: seconds from the first stats line, from the log's timestamps (every 10 s here)
    xs = trace["running"]["x"]
    assert xs[0] == 0 and all(b > a for a, b in zip(xs, xs[1:]))
    assert fig["layout"]["xaxis3"]["title"]["text"] == "seconds since the first stats line"
    # three rows sharing one x axis: KV on top, requests, then tokens/s
    assert trace["kv_cache_usage_pct"].get("yaxis", "y") == "y"
    assert trace["running"]["yaxis"] == "y2" and trace["generation_tokens_per_s"]["yaxis"] == "y3"
    # the findings, each with its id, title and evidence, in the aside next to the plots
    aside = page.split("<aside class='findings'>")[1].split("</aside>")[0]
    assert diag.findings
    for f in diag.findings:
        assert f.id in aside and _esc(f.title) in aside
    assert embedded_data(page)["findings"] == [f.id for f in diag.findings]


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def test_doctor_page_without_stats_lines_says_why(tmp_path):
    log = tmp_path / "short.log"
    log.write_text("INFO 10-14 15:30:00 [api_server.py:1] vLLM API server version 0.11.0\n")
    _facts, diag = _diagnosis(str(log))
    page = plots.doctor_html(diag)
    assert figures(page) == [] and "no engine-stats lines" in page
    assert embedded_data(page)["points"] == []


def _cli(*args: str, env: Optional[Dict[str, str]] = None, cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pbsvllm", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, timeout=120)


def test_doctor_format_html_from_the_command_line_matches_the_committed_example():
    r = _cli("doctor", "qwen3-vl-tp4-eager.log", "--profile", "polaris", "--gpus", "4", "--format", "html",
             cwd=os.path.join(EXAMPLES, "doctor"))  # as examples/doctor/run.sh makes it
    assert r.returncode == 0, r.stderr
    with open(os.path.join(EXAMPLES, "doctor", "review.html"), encoding="utf-8") as fh:
        committed = fh.read()
    # plotly gives each figure a random div id; everything else is the same page
    strip = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert strip.sub("ID", r.stdout) == strip.sub("ID", committed)


def test_without_plotly_the_html_format_says_how_to_get_it(tmp_path):
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['plotly'] = None\n")
    r = _cli("doctor", "examples/doctor/qwen3-vl-tp4-eager.log", "--format", "html",
             env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert r.returncode == ConfigError.exit_code
    assert r.stderr.strip() == ("pbsvllm: error: plots need the optional plotly package, which is not installed "
                                "(pip install 'pbsvllm[plot]')")
    r = _cli("bench", "http://127.0.0.1:9/v1", "--model", "m", "--plot", str(tmp_path / "p.html"),
             env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert r.returncode == ConfigError.exit_code and "pbsvllm[plot]" in r.stderr  # before any request


def test_bench_plot_folder_is_checked_before_the_run(tmp_path):
    r = _cli("bench", "http://127.0.0.1:9/v1", "--model", "m", "--plot", str(tmp_path / "no" / "p.html"))
    assert r.returncode == ConfigError.exit_code and "does not exist" in r.stderr


def test_help_never_imports_plotly():
    code = ("import sys\nfrom pbsvllm.cli import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print([m for m in sys.modules if m.startswith('plotly') or m == 'pbsvllm.plots'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_bench_plot_from_the_command_line(fake_server, tmp_path):  # noqa: F811
    out = tmp_path / "report.html"
    url = fake_server.base + "/ok/v1"
    r = _cli("bench", url, "--vs", url, "--model", "m", "-n", "4", "-c", "1,2", "--input-len", "4",
             "--output-len", "3", "--json", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    assert f"plot written to {out}" in r.stderr
    report = json.loads(r.stdout)
    page = out.read_text()
    assert_offline(page)
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    (fig,) = figures(page)
    tput = [t for t in fig["data"] if t["meta"]["figure"] == "output_tokens_per_s"]
    assert len(tput) == 2 and all(t["x"] == [1, 2] for t in tput)
    assert tput[0]["y"] == pytest.approx([lv["output_tokens_per_s"] for lv in report["runs"][0]["levels"]])
