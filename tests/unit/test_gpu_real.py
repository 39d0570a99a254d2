"""What real vLLM said on a real GPU (tests/data/gpu-real, see its SOURCE.md) against pbsvllm.

* the doctor's reading of the real H100 logs (a served-under-load run and a start-up failure);
* the planner's KV-cache prediction against the ``GPU KV cache size: N tokens`` line vLLM 0.24.0
  logged on the H100, for two models and two memory fractions (target: within 5%);
* scripts/gpu_summary.py on the kept work folders (the figures docs/performance.md quotes).
"""

import json
import os
import subprocess
import sys

import pytest

from pbsvllm import vllmlog
from tests.paths import DATA, ROOT

REAL = os.path.join(DATA, "gpu-real")
KV = os.path.join(REAL, "h100-kv")
VS = os.path.join(REAL, "h100-vs")
DP1 = os.path.join(REAL, "h100-dp-vs-tp-1gpu")
MODELS = os.path.join(REAL, "models")


def run_cli(args, home):
    cfg = home / "config.toml"
    if not cfg.exists():
        cfg.write_text("")
    env = dict(os.environ, PBSVLLM_HOME=str(home), PBSVLLM_CONFIG=str(cfg), HF_HUB_OFFLINE="1")
    env.pop("PBSVLLM_PROFILE", None)
    res = subprocess.run([sys.executable, "-m", "pbsvllm", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, f"pbsvllm {' '.join(args)} failed rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def evidence_is_real(report, path):
    with open(path, "rb") as fh:
        lines = fh.read().decode("utf-8", "replace").split("\n")
    for f in report["findings"]:
        for ev in f["evidence"]:
            assert vllmlog.strip_line(lines[ev["line"] - 1])[:1000] == ev["text"], (f["id"], ev)


# ---------------------------------------------------------------- the doctor on real GPU logs

def test_doctor_reads_the_real_h100_log_under_load(tmp_path):
    path = os.path.join(KV, "server-submit.log")
    rep = json.loads(run_cli(["doctor", path, "--format", "json", "--model", os.path.join(MODELS, "qwen2.5-1.5b"),
                              "--gpus", "1", "--gpu-memory", "79.6", "--device", "cuda"], tmp_path).stdout)
    f = rep["facts"]
    assert (f["vllm_version"], f["engine_version"]) == ("0.24.0", "V1")
    assert (f["kv_cache_tokens"], f["available_kv_cache_gib"], f["model_load_gib"]) == (2600240, 69.43, 2.98)
    assert (f["tensor_parallel_size"], f["max_num_seqs"], f["max_num_batched_tokens"]) == (1, 1024, 16384)
    assert f["gpu_memory_utilization"] == 0.95 and f["enforce_eager"] is False and f["error"] is None
    assert f["max_concurrency"] == 79.35 and f["max_concurrency_tokens_per_request"] == 32768
    # the 3000-request load at concurrency 256 (load-bench.json) is in the stats lines
    assert rep["load"]["peak_running_per_engine"] == 256 and f["engine_stats_lines"] >= 5
    ids = {x["id"]: x["severity"] for x in rep["findings"]}
    assert "eager_mode" not in ids and not any(s == "critical" for s in ids.values())
    assert ids.get("kv_cache_idle") == "high"  # 256 requests filled ~6% of 2.6M KV tokens
    evidence_is_real(rep, path)
    # the doctor's recommendation re-plans this model for this GPU: the same KV figure the plan predicted
    rec = rep["recommendation"]
    assert rec["available"] and rec["capacity_after"]["kv_cache_tokens_per_replica"] == pytest.approx(2627331, abs=50)


def test_doctor_on_the_device_agrees_with_the_doctor_here():
    """doctor.json was written on the GPU machine from the same log: the same facts and findings."""
    with open(os.path.join(KV, "doctor.json")) as fh:
        there = json.load(fh)
    facts = vllmlog.parse_file(os.path.join(KV, "server-submit.log"))
    assert there["facts"]["kv_cache_tokens"] == facts.kv_cache_tokens == 2600240
    assert [x["id"] for x in there["findings"]] == ["kv_cache_idle", "prefix_cache_low", "max_model_len_oversized"]


def test_doctor_reads_a_real_gpu_startup_failure(tmp_path):
    """vLLM 0.24's sampler imports FlashInfer; without it the engine core dies at start-up."""
    path = os.path.join(KV, "server-fail-no-flashinfer.log")
    rep = json.loads(run_cli(["doctor", path, "--format", "json"], tmp_path).stdout)
    assert (rep["facts"]["error"], rep["facts"]["phase"]) == ("engine_init_failed", "starting")
    assert [x["id"] for x in rep["findings"]] == ["error_engine_init_failed"]
    assert rep["findings"][0]["severity"] == "critical"
    evidence_is_real(rep, path)
    with open(path) as fh:
        assert "No module named 'flashinfer'" in fh.read()  # the root cause the finding points above


# ---------------------------------------------------------------- the planner against vLLM's KV line

KV_CASES = [
    # (model, --gpu-memory-utilization, the real log with the server's KV line, what vLLM logged)
    ("qwen2.5-1.5b", None, os.path.join(KV, "server-submit.log"), 2600240),     # the plan's own 0.95
    ("qwen2.5-1.5b", "0.45", os.path.join(VS, "server-plan.log"), 1117648),
    ("qwen3-1.7b", "0.45", os.path.join(DP1, "server-plan.log"), 292288),
]


@pytest.mark.parametrize("model,util,log,logged", KV_CASES, ids=["qwen2.5-1.5b@0.95", "qwen2.5-1.5b@0.45",
                                                                 "qwen3-1.7b@0.45"])
def test_planner_kv_prediction_within_5_percent_of_the_real_h100(tmp_path, model, util, log, logged):
    assert vllmlog.parse_file(log).kv_cache_tokens == logged
    args = ["plan", os.path.join(MODELS, model), "--probe-file", os.path.join(KV, "probe-raw.json"), "-P", "local",
            "--device", "cuda", "--vllm-version", "0.24.0", "--json"]
    if util:
        args.append(f"--vllm-arg=--gpu-memory-utilization={util}")
    plan = json.loads(run_cli(args, tmp_path).stdout)
    assert plan["tensor_parallel_size"] == 1 and plan["gpu_memory_utilization"] == float(util or 0.95)
    error = (plan["kv_cache_tokens"] - logged) / logged
    assert abs(error) < 0.05, f"predicted {plan['kv_cache_tokens']:,} vs vLLM's {logged:,} ({error:+.1%})"


def test_the_kept_plans_are_what_the_planner_says_here():
    """plan.json was computed on the GPU machine (weights from the safetensors there); the config-only
    plan here differs by the few bytes of non-parameter tensors at most."""
    for folder in (KV, VS):
        with open(os.path.join(folder, "plan.json")) as fh:
            p = json.load(fh)
        assert p["vllm_args"][p["vllm_args"].index("--max-num-seqs") + 1] == "1024"
        assert p["memory"]["gpu_memory_gib"] == 79.6 and p["kv_cache_tokens"] == 2627325


# ---------------------------------------------------------------- scripts/gpu_summary.py on the kept folders

def summarize(folder):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import gpu_summary
    finally:
        sys.path.pop(0)
    return gpu_summary.summarize(folder)


def test_summary_of_the_seed_vs_plan_run():
    s = summarize(VS)
    assert s["vllm_version"] == "0.24.0" and s["hardware"]["gpu_name"] == "NVIDIA H100 80GB HBM3"
    (check,) = s["kv_checks"]
    assert (check["predicted_tokens"], check["measured_tokens"], check["error"]) == (1136849, 1117648, 0.0172)
    levels = s["bench"]["seed-vs-plan"]["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 8, 64, 256]
    for lv in levels:  # the plan (b) out-produced the seed's flags (a) at every concurrency
        assert lv["ratio_b_over_a"]["output_tokens_per_s"] > 1.2
        assert lv["b"]["mean_output_tokens"] == lv["a"]["mean_output_tokens"] == 128.0
    assert levels[0]["ratio_b_over_a"]["output_tokens_per_s"] == 5.966
    assert s["servers"]["baseline"].get("graph_gib") is None and s["servers"]["plan"]["graph_gib"] == 0.42


def test_summary_of_the_kv_run():
    s = summarize(KV)
    (check,) = s["kv_checks"]
    assert (check["predicted_tokens"], check["measured_tokens"], check["error"]) == (2627325, 2600240, 0.0104)
    assert check["measured"]["available_kv_gib"] == 69.43 and check["measured"]["graph_gib"] == 0.42


def test_summary_of_the_one_gpu_dp_vs_tp_dry_run():
    s = summarize(DP1)
    assert set(s["bench"]) == {"seed-vs-plan", "tpn-vs-plan"}
    tpn = {lv["concurrency"]: lv["ratio_b_over_a"]["output_tokens_per_s"] for lv in s["bench"]["tpn-vs-plan"]["levels"]}
    # one GPU: the plan differs from vLLM's defaults only in its batch limits; within noise of each other
    assert all(0.9 < r < 1.1 for r in tpn.values()), tpn


def test_report_renders_a_kept_multi_gpu_run(tmp_path):
    """A 4-GPU run kept as tests/data/gpu-real/<node>-dp-vs-tp/ gets its own section (issue 18's place)."""
    import shutil

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import render_report
    finally:
        sys.path.pop(0)
    shutil.copytree(DP1, tmp_path / "h200x4-dp-vs-tp")
    text = "\n".join(render_report.multi_gpu_runs(str(tmp_path)))
    assert "### DP against TP on 1× NVIDIA H100 80GB HBM3 (`h200x4-dp-vs-tp/`)" in text
    assert "the planner chose TP=1 DP=1" in text and "| 256 | 512 |" in text
    assert render_report.multi_gpu_runs(REAL) == []  # no multi-GPU run kept yet
