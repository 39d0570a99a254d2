"""pbsvllm bench against the real vLLM CPU server (tests/plugins/vllm.py starts it).

A few seconds of load: 12 short requests at concurrency 1 and 4. One
server only (the session-wide eager ``tiny`` server with an API key, shared
with other tests); if it cannot start, the fixture fails the test loudly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pbsvllm import bench

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.vllm


def test_bench_real_vllm_cli_json(vllm_server_key):
    srv = vllm_server_key
    env = dict(os.environ)
    env["VLLM_API_KEY"] = srv.api_key  # the default --api-key-env; never on the command line
    proc = subprocess.run(
        [sys.executable, "-m", "pbsvllm", "bench", srv.base_url, "--model", srv.served_name,
         "-n", "12", "-c", "1,4", "--input-len", "16", "--output-len", "8", "--seed", "5", "--json",
         "--timeout", "60"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr, srv.log_tail())
    assert srv.api_key not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    levels = doc["runs"][0]["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for lv in levels:
        assert lv["ok"] == 12 and lv["errors"] == {}, lv
        # ignore_eos makes vLLM generate exactly max_tokens; usage says so
        assert lv["mean_output_tokens"] == 8
        assert lv["mean_prompt_tokens"] >= 16
        assert 0 < lv["ttft_p50_s"] <= lv["latency_p50_s"] <= lv["latency_p99_s"]
        assert lv["output_tokens_per_s"] == pytest.approx(lv["requests_per_s"] * 8)


def test_bench_real_vllm_key_and_wrong_model(vllm_server_key):
    srv = vllm_server_key
    reqs = bench.synthetic_requests(3, 8, 4, seed=0)
    good = bench.url_target(srv.base_url, srv.served_name, "K", environ={"K": srv.api_key})
    nokey = bench.url_target(srv.base_url, srv.served_name, "K", environ={})
    wrong = bench.url_target(srv.base_url, "not-served", "K", environ={"K": srv.api_key})
    report = bench.run_bench([good, nokey, wrong], reqs, [2], timeout_s=60)
    got = [run.levels[0] for run in report.runs]
    assert got[0].ok == 3 and got[0].errors == {}
    assert got[1].errors == {"http_401": 3}
    assert got[2].errors == {"http_404": 3} and "not-served" in got[2].error_examples["http_404"]
    assert srv.api_key not in json.dumps(report.to_json()) + bench.format_table(report) + bench.to_csv(report)
