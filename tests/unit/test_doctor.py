"""pbsvllm doctor: the seed scenario, every constructed version/error log, the
real CPU logs, the three report formats, and a tracked job by alias. The CLI
runs as a real subprocess (``python -m pbsvllm``)."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from pbsvllm import doctor, vllmlog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "vllm")
SEED = os.path.join(DATA, "constructed-seed-qwen3-vl-2b-tp4-eager-v0.11.log")


def run_cli(args, home, check=True):
    cfg = home / "config.toml"  # an empty user config: only built-in profiles
    if not cfg.exists():
        cfg.write_text("")
    env = dict(os.environ, PBSVLLM_HOME=str(home), PBSVLLM_CONFIG=str(cfg), HF_HUB_OFFLINE="1",
               HF_HOME=str(home / "hf"))
    env.pop("PBSVLLM_PROFILE", None)
    res = subprocess.run([sys.executable, "-m", "pbsvllm", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"pbsvllm {' '.join(args)} failed rc={res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def doctor_json(path, home, *extra):
    return json.loads(run_cli(["doctor", path, "--format", "json", *extra], home).stdout)


def lines_of(path):
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8", "replace").split("\n")


def assert_evidence_is_real(report, path):
    """Every evidence line is the log's line of that number, wrappers stripped."""
    lines = lines_of(path)
    for f in report["findings"]:
        for ev in f["evidence"]:
            raw = lines[ev["line"] - 1]
            assert vllmlog.strip_line(raw) == ev["text"] or vllmlog.strip_line(raw)[:1000] == ev["text"], (f["id"], ev)


# ---------------------------------------------------------------- the seed
def test_seed_log_parses_as_the_seed_describes():
    f = vllmlog.parse_file(SEED)
    assert f.vllm_version == "0.11.0" and f.model == "Qwen/Qwen3-VL-2B-Instruct"
    assert f.tensor_parallel_size == 4 and f.enforce_eager is True and f.cudagraph_disabled
    assert f.custom_allreduce_pcie_warning
    assert f.stats["0"].max_running.stats.running == 8
    assert f.stats["0"].max_kv.stats.kv_cache_usage_pct == 1.6
    assert f.args["disable_log_requests"] is True
    assert f.max_num_batched_tokens == 2048


def test_seed_diagnosis_and_plan_tp1_dp4_without_eager(tmp_path):
    rep = doctor_json(SEED, tmp_path, "--profile", "polaris", "--gpus", "4")
    ids = [f["id"] for f in rep["findings"]]
    for want in ("tp_oversized", "tp_over_pcie", "eager_mode", "kv_cache_idle", "batched_tokens_small",
                 "deprecated_flag"):
        assert want in ids, ids
    assert ids[0] == "tp_oversized" and rep["findings"][0]["severity"] == "critical"
    dep = next(f for f in rep["findings"] if f["id"] == "deprecated_flag")
    assert "--disable-log-requests" in dep["title"]
    idle = next(f for f in rep["findings"] if f["id"] == "kv_cache_idle")
    assert "1.6%" in idle["title"] and "8 requests" in idle["title"]
    # the node: the log's PCIe warning beats the profile's NVLink, and says so
    assert rep["node"]["interconnect"] == "pcie" and rep["node"]["sources"]["interconnect"].startswith("log")
    assert any("nvlink" in n for n in rep["node"]["notes"])
    rec = rep["recommendation"]
    assert rec["available"]
    plan = rec["plan"]
    assert (plan["tensor_parallel_size"], plan["data_parallel_size"]) == (1, 4)
    assert "--enforce-eager" not in rec["vllm_args"]
    changes = {c["flag"]: c for c in rec["changes"]}
    assert changes["--tensor-parallel-size"]["recommended"] == "1"
    assert changes["--data-parallel-size"]["recommended"] == "4"
    assert changes["--enforce-eager"]["action"] == "remove"
    assert changes["--disable-log-requests"]["action"] == "remove"
    assert int(changes["--max-num-seqs"]["recommended"]) > 256
    assert rec["capacity_before"]["replicas"] == 1 and rec["capacity_after"]["replicas"] == 4
    assert rec["capacity_after"]["max_num_seqs_total"] > rec["capacity_before"]["max_num_seqs_total"]
    assert_evidence_is_real(rep, SEED)


def test_seed_submit_command_runs_exactly_the_recommended_flags(tmp_path):
    """The printed `pbsvllm submit` command, run with --dry-run, renders a
    script whose vLLM arguments are the recommendation's."""
    rep = doctor_json(SEED, tmp_path, "--profile", "polaris", "--gpus", "4")
    argv = shlex.split(rep["recommendation"]["submit_command"])
    assert argv[:3] == ["pbsvllm", "submit", "Qwen/Qwen3-VL-2B-Instruct"]
    script = run_cli(argv[1:] + ["--dry-run"], tmp_path).stdout
    rendered = []
    for m in re.finditer(r"^VLLM_ARGS\+=\((.*?)\)(?:  #.*)?$", script, re.M):
        rendered += shlex.split(m.group(1))
    want = [("$PORT" if a == "8000" and i > 0 and rep["recommendation"]["vllm_args"][i - 1] == "--port" else a)
            for i, a in enumerate(rep["recommendation"]["vllm_args"])]
    assert rendered == want


def test_seed_without_profile_estimates_the_node_and_says_so(tmp_path):
    rep = doctor_json(SEED, tmp_path)
    src = rep["node"]["sources"]
    assert src["gpus"].startswith("assumed") and src["gpu_memory_gib"].startswith("assumed")
    assert rep["node"]["gpu_memory_gib"] == 40.0  # (1.10 + 31.62 GiB) / 0.90, rounded up to a GPU size
    tp = next(f for f in rep["findings"] if f["id"] == "tp_oversized")
    assert tp["assumptions"] and any("gpus" in a for a in tp["assumptions"])
    plan = rep["recommendation"]["plan"]
    assert (plan["tensor_parallel_size"], plan["data_parallel_size"]) == (1, 4)


def test_seed_markdown_report_has_the_guide_sections_in_order(tmp_path):
    md = run_cli(["doctor", SEED, "--profile", "polaris", "--gpus", "4", "--format", "markdown"], tmp_path).stdout
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == ["## Summary", "## Current configuration", "## Issues by priority", "## Recommended command",
                     "## Expected effect", "## How to validate"]
    assert "pbsvllm submit Qwen/Qwen3-VL-2B-Instruct --alias qwen3-vl" in md
    assert "`--tensor-parallel-size` | 4 |" in md


def test_text_report_is_the_default(tmp_path):
    out = run_cli(["doctor", SEED, "--profile", "polaris", "--gpus", "4"], tmp_path).stdout
    assert "[critical] tensor parallel 4" in out and "apply with:" in out
    assert "pbsvllm submit" in out.splitlines()[-1]


def test_json_facts_use_the_issue_key_names(tmp_path):
    rep = doctor_json(SEED, tmp_path, "--profile", "polaris")
    f = rep["facts"]
    assert {k: f[k] for k in ("vllm_version", "model", "tensor_parallel_size", "pipeline_parallel_size",
                               "data_parallel_size", "enforce_eager", "max_num_batched_tokens", "max_model_len",
                               "kv_cache_tokens", "max_concurrency", "custom_allreduce_pcie_warning",
                               "engine_stats_lines", "last_kv_cache_usage_pct", "error")} == {
        "vllm_version": "0.11.0", "model": "Qwen/Qwen3-VL-2B-Instruct", "tensor_parallel_size": 4,
        "pipeline_parallel_size": 1, "data_parallel_size": 1, "enforce_eager": True, "max_num_batched_tokens": 2048,
        "max_model_len": 262144, "kv_cache_tokens": 1184141, "max_concurrency": 4.52,
        "custom_allreduce_pcie_warning": True, "engine_stats_lines": 31, "last_kv_cache_usage_pct": 0.0,
        "error": None,
    }
    assert "max_num_seqs" not in f and "gpu_memory_utilization" not in f  # the log does not show them
    for fd in rep["findings"]:
        assert {"id", "severity", "evidence", "recommendation"} <= set(fd)
        assert fd["severity"] in doctor.SEVERITIES


# ---------------------------------------------------------------- other versions
def test_v063_v0_log_kv_full_with_pending_and_preemptions(tmp_path):
    path = os.path.join(DATA, "constructed-v0.6.3-v0-kv-full.log")
    rep = doctor_json(path, tmp_path, "--gpu-memory", "40", "--gpus", "2")
    f = rep["facts"]
    assert f["vllm_version"] == "0.6.3.post1" and f["engine_version"] == "V0" and f["tensor_parallel_size"] == 2
    assert f["max_num_seqs"] == 256 and f["gpu_memory_utilization"] == 0.9  # from the Namespace
    ids = [x["id"] for x in rep["findings"]]
    assert "kv_cache_full" in ids and "deprecated_flag" not in ids  # 0.6.3: --disable-log-requests not deprecated yet
    full = next(x for x in rep["findings"] if x["id"] == "kv_cache_full")
    assert "preemptions" in full["title"]
    assert rep["load"]["preemptions"] == 3 and rep["load"]["peak_waiting_per_engine"] == 23
    assert rep["load"]["mean_busy_prefix_cache_hit_pct"] == 0.0  # the V0 second line
    assert_evidence_is_real(rep, path)


def test_v085_dp2_namespace_and_two_engines(tmp_path):
    path = os.path.join(DATA, "constructed-v0.8.5-dp2.log")
    rep = doctor_json(path, tmp_path, "--gpus", "2", "--gpu-memory", "80", "--interconnect", "nvlink")
    f = rep["facts"]
    assert f["data_parallel_size"] == 2 and f["kv_cache_tokens"] == 432160 and f["engine_stats_lines"] == 16
    assert rep["load"]["engines"] == 2
    assert [x["id"] for x in rep["findings"] if x["severity"] in ("critical", "high")] == []


def test_v0201_capped_by_max_num_seqs_with_kv_room(tmp_path):
    path = os.path.join(DATA, "constructed-v0.20.1-llama70b-capped.log")
    rep = doctor_json(path, tmp_path, "--gpus", "4", "--gpu-memory", "80", "--interconnect", "nvlink")
    binds = next(x for x in rep["findings"] if x["id"] == "max_num_seqs_binds")
    assert "--max-num-seqs 64" in binds["title"]
    # docker timestamps are stripped from the evidence
    assert all(not e["text"].startswith("2025-") for e in binds["evidence"])
    assert_evidence_is_real(rep, path)


def test_v0330_healthy_log_has_no_serious_findings(tmp_path):
    path = os.path.join(DATA, "constructed-v0.33.0-healthy.log")
    rep = doctor_json(path, tmp_path, "--gpus", "1", "--gpu-memory", "80")
    f = rep["facts"]
    assert f["vllm_version"] == "0.33.0" and f["kv_cache_tokens"] == 2154816 and f["max_concurrency"] == 131.52
    assert f["model_load_gib"] == 14.25
    assert [x for x in rep["findings"] if x["severity"] in ("critical", "high", "medium")] == []


@pytest.mark.parametrize(
    "name,kind",
    [
        ("cuda-oom", "cuda_oom"),
        ("no-cache-memory", "no_cache_memory"),
        ("kv-too-small-v0", "kv_cache_too_small"),
        ("kv-too-small-v011", "kv_cache_too_small"),
        ("free-memory-v033", "free_memory_low"),
        ("port-in-use", "port_in_use"),
        ("nccl", "nccl"),
    ],
)
def test_error_logs_are_classified_with_their_fix(tmp_path, name, kind):
    path = os.path.join(DATA, f"constructed-error-{name}.log")
    rep = doctor_json(path, tmp_path)
    assert rep["facts"]["error"] == kind
    first = rep["findings"][0]
    assert first["id"] == "error_" + kind and first["severity"] == "critical"
    assert first["evidence"] and first["recommendation"]
    if name == "kv-too-small-v011":
        assert "--max-model-len 55968" in first["recommendation"]
    # the generic "initialization failed" is a consequence, not a second finding
    assert "error_engine_init_failed" not in [x["id"] for x in rep["findings"]]
    assert_evidence_is_real(rep, path)


# ---------------------------------------------------------------- real CPU runs
def test_real_cpu_normal_shutdown_is_not_a_failure(tmp_path):
    path = os.path.join(DATA, "vllm-0.32.0-cpu-compiled.log")
    rep = doctor_json(path, tmp_path)
    assert rep["facts"]["error"] is None
    assert not [x for x in rep["findings"] if x["id"].startswith("error_")]
    assert rep["node"]["device"] == "cpu" and rep["node"]["cpu_kvcache_gib"] == 1.0
    assert any("normal shutdown" in s for s in rep["strengths"])
    # the model is a local path of the machine that ran it: no plan, and it says why and what to pass
    assert not rep["recommendation"]["available"]
    assert "--params" in rep["recommendation"]["why_unavailable"]


def test_real_cpu_crash_is_the_root_cause(tmp_path):
    path = os.path.join(DATA, "vllm-0.32.0-cpu-headdim16-crash.log")
    rep = doctor_json(path, tmp_path)
    assert rep["findings"][0]["id"] == "error_cpu_attention_unsupported"
    assert "head_dim=16" in rep["findings"][0]["evidence"][0]["text"]
    assert_evidence_is_real(rep, path)


def test_real_cpu_two_api_servers_means_no_stats(tmp_path):
    rep = doctor_json(os.path.join(DATA, "vllm-0.32.0-cpu-dp2-2apiservers.log"), tmp_path)
    assert [x["id"] for x in rep["findings"]] == ["stats_logging_disabled"]
    assert "--api-server-count 1" in rep["findings"][0]["recommendation"]


def test_real_cpu_dp2_one_api_server_reads_both_engines(tmp_path):
    rep = doctor_json(os.path.join(DATA, "vllm-0.32.0-cpu-dp2-1apiserver.log"), tmp_path, "--params", "0.0004B")
    assert rep["load"]["engines"] == 2 and rep["facts"]["data_parallel_size"] == 2
    assert rep["load"]["peak_running_per_engine"] == 10


def test_real_cpu_eager_on_cpu_is_low_severity(tmp_path):
    rep = doctor_json(os.path.join(DATA, "vllm-0.32.0-cpu-eager.log"), tmp_path)
    eager = next(x for x in rep["findings"] if x["id"] == "eager_mode")
    assert eager["severity"] == "low" and "torch.compile" in eager["title"]


# ---------------------------------------------------------------- a tracked job
def test_doctor_by_alias_reads_the_job_record(tmp_path):
    from pbsvllm.jobs import JobRecord, JobStore

    store = JobStore(str(tmp_path))
    store.save(JobRecord(job_id="4242.polaris-pbs-01", alias="qwen3-vl", model="Qwen/Qwen3-VL-2B-Instruct",
                         profile="polaris", log_path=SEED, scheduler="pbspro",
                         plan={"tensor_parallel_size": 4, "data_parallel_size": 1, "max_num_seqs": 256,
                               "vllm_args": ["Qwen/Qwen3-VL-2B-Instruct", "--tensor-parallel-size", "4"]}))
    rep = json.loads(run_cli(["doctor", "qwen3-vl", "--json"], tmp_path).stdout)
    assert rep["log"] == SEED
    assert rep["node"]["sources"]["gpus"] == "profile polaris"
    assert rep["recommendation"]["submit_command"].startswith(
        "pbsvllm submit Qwen/Qwen3-VL-2B-Instruct --alias qwen3-vl --profile polaris")
    assert rep["recommendation"]["plan"]["data_parallel_size"] == 4
    assert any(n.startswith("job 4242.polaris-pbs-01 was submitted with the plan TP=4 DP=1") and "the log agrees" in n
               for n in rep["recommendation"]["notes"])


def test_unknown_target_is_one_clear_error(tmp_path):
    res = run_cli(["doctor", "no-such-alias"], tmp_path, check=False)
    assert res.returncode == 5 and "no tracked job" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(["doctor", "/nonexistent/x.log"], tmp_path, check=False)
    assert res.returncode == 9 and "vLLM log not found" in res.stderr


def test_vllm_defaults_follow_the_reference():
    d = doctor.vllm_defaults("0.11.0", "V1", "cuda", 40, "NVIDIA A100-SXM4-40GB")
    assert d["max_num_seqs"][0] == 256 and d["max_num_batched_tokens"][0] == 2048
    assert d["gpu_memory_utilization"][0] == 0.90
    assert doctor.vllm_defaults("0.11.0", "V1", "cuda", 80, "NVIDIA A100-SXM4-80GB")["max_num_seqs"][0] == 256
    assert doctor.vllm_defaults("0.11.0", "V1", "cuda", 80, "NVIDIA H100 80GB HBM3")["max_num_seqs"][0] == 1024
    assert doctor.vllm_defaults("0.33.0", "V1", "cuda", 141, "H200")["max_num_batched_tokens"][0] == 8192
    assert doctor.vllm_defaults("0.33.0", "V1", "cuda", 180, "B200")["max_num_batched_tokens"][0] == 16384
    assert doctor.vllm_defaults("0.20.0", "V1", "cuda", 40)["gpu_memory_utilization"][0] == 0.92
    assert doctor.vllm_defaults("0.6.3", "V0", "cuda", 40, max_model_len=32768)["max_num_batched_tokens"][0] == 32768
    assert doctor.vllm_defaults("0.11.0", "V1", "cuda", None)["max_num_seqs"][0] is None


# ---------------------------------------------------------------- our own real vLLM CPU runs (tests/data/vllm-real)
REAL = os.path.join(ROOT, "tests", "data", "vllm-real")


def test_real_dp2_one_api_server_run(tmp_path):
    """DP=2 with --api-server-count 1: one stats line per engine, both read."""
    path = os.path.join(REAL, "vllm-0.32.0-cpu-dp2-1api.log")
    rep = doctor_json(path, tmp_path)
    f = rep["facts"]
    assert (f["data_parallel_size"], f["enforce_eager"]) == (2, True)
    assert f.get("api_server_count", 1) == 1  # vLLM's non-default args leave out an explicit 1
    assert rep["load"]["engines"] == 2 and f["engine_stats_lines"] > 2
    facts = vllmlog.parse_file(path)
    assert sorted(facts.stats) == ["0", "1"] and facts.kv_cache_tokens_by_engine == {0: 2097152, 1: 2097152}
    assert f["error"] is None and "stats_logging_disabled" not in [x["id"] for x in rep["findings"]]
    assert_evidence_is_real(rep, path)


def test_real_eager_under_load_run(tmp_path):
    path = os.path.join(REAL, "vllm-0.32.0-cpu-eager-load.log")
    rep = doctor_json(path, tmp_path)
    assert rep["facts"]["error"] is None and rep["node"]["device"] == "cpu"
    assert rep["load"]["peak_running_per_engine"] >= 2
    eager = next(x for x in rep["findings"] if x["id"] == "eager_mode")
    assert eager["severity"] == "low"
    assert_evidence_is_real(rep, path)


def test_real_kv_too_small_run_suggests_vllms_own_length(tmp_path):
    path = os.path.join(REAL, "vllm-0.32.0-cpu-kv-too-small.log")
    rep = doctor_json(path, tmp_path)
    assert rep["facts"]["error"] == "kv_cache_too_small"
    assert rep["facts"]["max_model_len"] == 4194304
    first = rep["findings"][0]
    assert first["id"] == "error_kv_cache_too_small"
    assert f"--max-model-len {rep['facts']['suggested_max_model_len']}" in first["recommendation"]
    assert_evidence_is_real(rep, path)


def test_real_port_busy_run(tmp_path):
    path = os.path.join(REAL, "vllm-0.32.0-cpu-port-busy.log")
    rep = doctor_json(path, tmp_path)
    assert rep["facts"]["error"] == "port_in_use"
    assert rep["findings"][0]["id"] == "error_port_in_use"
    # the server died before saying which device it runs on: no claim about CUDA graphs
    eager = next(x for x in rep["findings"] if x["id"] == "eager_mode")
    assert eager["severity"] == "medium" and eager["assumptions"]
    assert_evidence_is_real(rep, path)


def test_text_that_is_not_a_vllm_log_says_so(tmp_path):
    junk = tmp_path / "notes.log"
    junk.write_bytes(b"just some text\n\x00\xff\xfe binary \x1b[31m colour\nTraceback (most recent call last):\n")
    for fmt in ("text", "markdown"):
        out = run_cli(["doctor", str(junk), "--format", fmt], tmp_path).stdout
        assert "no vLLM line recognised in 3 lines" in out
    rep = doctor_json(str(junk), tmp_path)
    assert [f["id"] for f in rep["findings"]] == ["not_a_vllm_log"]
    assert rep["facts"]["error"] is None and not rep["recommendation"]["available"]
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert doctor_json(str(empty), tmp_path)["lines_read"] == 0


def test_markdown_without_a_recommendation_says_why(tmp_path):
    md = run_cli(["doctor", os.path.join(DATA, "vllm-0.32.0-cpu-headdim16-crash.log"), "--format", "markdown"],
                 tmp_path).stdout
    assert "## Recommended command" in md and "Not available: the planner could not plan /path/to/tiny-h16" in md
    assert "Unsupported CPU attention configuration" in md
