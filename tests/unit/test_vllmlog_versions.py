"""The parser on logs built from each version's format strings
(tests/data/vllm/build_logs.py, docs/reference/vllm-logs.md) and on the real
lines pasted in public threads (vllm-log-lines-by-version.txt)."""

import os

import pytest

from pbsvllm import vllmlog as V

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vllm")


def facts(name):
    return V.parse_file(os.path.join(DATA, name))


def test_v063_v0_layout_namespace_blocks_and_prefix_line():
    f = facts("constructed-v0.6.3-v0-kv-full.log")
    assert f.vllm_version == "0.6.3.post1" and f.engine_version == "V0"
    assert f.args_source == "namespace" and f.args["tensor_parallel_size"] == 2
    assert f.args["served_model_name"] == ["llama8b"] and f.served_model_name == "llama8b"
    assert f.max_num_seqs == 256 and f.gpu_memory_utilization == 0.9 and f.max_model_len == 32768
    assert f.gpu_blocks == 28160 and f.cpu_blocks == 4096 and f.kv_cache_tokens == 28160 * 16
    assert f.max_concurrency == 13.75 and f.max_concurrency_tokens_per_request == 32768
    assert f.model_load_gib == 7.5122 and f.graph_capture_seconds == 15 and f.graph_capture_gib == 0.58
    s = f.stats["all"]
    assert s.count == 12 and s.max_waiting.stats.waiting == 23 and s.last.stats.swapped == 0
    assert s.prefix_count == 12 and s.prefix_sum == 0.0  # the separate V0 "Prefix cache hit rate: GPU" lines
    assert f.v0_preemption_warnings == 3
    assert f.phases["ready"] < f.first_evidence("preemption")[0]


def test_v085_brackets_worker_rank_prefix_dp2():
    f = facts("constructed-v0.8.5-dp2.log")
    assert f.vllm_version == "0.8.5" and f.engine_version == "V1" and f.args_source == "namespace"
    assert f.data_parallel_size == 2 and f.tensor_parallel_size == 1 and f.max_model_len == 8192
    assert f.enable_prefix_caching is True and f.enable_chunked_prefill is True
    assert f.model_load_gib == 14.2487 and f.model_load_seconds == 11.302123
    assert f.compile_seconds == 21.37 and f.graph_capture_seconds == 14 and f.init_engine_seconds == 52.6
    assert f.kv_cache_tokens == 432160 and f.max_concurrency == 52.75
    assert sorted(f.stats) == ["0", "1"] and f.stats["1"].last.stats.running == 125
    assert V.split_line("(VllmWorker rank=0 pid=101) INFO 10-14 15:30:00 [x.py:1] m").rank == 0


def test_v0201_optional_fields_and_docker_prefix():
    f = facts("constructed-v0.20.1-llama70b-capped.log")
    assert f.vllm_version == "0.20.1" and f.max_num_seqs == 64 and f.gpu_memory_utilization == 0.95
    last = f.stats["0"].last.stats
    assert last.deferred == 9 and last.preemptions == 0 and last.waiting == 29
    assert f.available_kv_cache_gib == 38.2 and f.kv_cache_tokens == 500695


def test_v0330_one_line_kv_memory_word_late_prefix_and_aggregated():
    f = facts("constructed-v0.33.0-healthy.log")
    assert f.vllm_version == "0.33.0" and f.served_model_name == "qwen7b"
    assert f.args["api_key"] == "***"
    assert f.kv_cache_tokens == 2154816 and f.max_concurrency == 131.52
    assert f.model_load_gib == 14.25 and f.model_load_seconds == 9.812
    assert f.stats["0"].first.stats.prefix_cache_hit_pct is None  # 0.33: no rate before there is data
    assert f.stats["all"].last.stats.engines_aggregated == 2


def test_seed_ansi_prefixes_are_stripped():
    f = facts("constructed-seed-qwen3-vl-2b-tp4-eager-v0.11.log")
    assert all("\x1b" not in t for lst in f.evidence.values() for _, t in lst)
    assert f.custom_allreduce_pcie_warning and f.custom_allreduce_disabled_reason == "pcie_only"
    assert f.platform_hint == "cuda"


@pytest.mark.parametrize(
    "name,kind",
    [
        ("constructed-error-cuda-oom.log", "cuda_oom"),
        ("constructed-error-no-cache-memory.log", "no_cache_memory"),
        ("constructed-error-kv-too-small-v0.log", "kv_cache_too_small"),
        ("constructed-error-kv-too-small-v011.log", "kv_cache_too_small"),
        ("constructed-error-free-memory-v033.log", "free_memory_low"),
        ("constructed-error-port-in-use.log", "port_in_use"),
        ("constructed-error-nccl.log", "nccl"),
    ],
)
def test_error_logs_root_cause(name, kind):
    f = facts(name)
    assert f.error == kind and f.errors.failed
    if kind != "port_in_use":
        assert "engine_init_failed" in f.errors.kinds_seen  # seen, but not the root cause


def test_real_lines_pasted_in_threads():
    f = facts("vllm-log-lines-by-version.txt")
    # 0.6.4 config line (no brackets), a V0 stats line + its prefix line, V1 lines of 0.20/0.24, docker
    assert f.errors.suggested_max_model_len is None  # the pasted V1 error was cut before the estimate
    assert f.error == "kv_cache_too_small"
    assert f.kv_cache_tokens == 619479  # the first KV size seen
    assert f.stats["0"].max_running.stats.running == 18 and f.stats["0"].max_waiting.stats.waiting == 43
    v0 = f.stats["all"]
    assert v0.count == 1 and v0.prefix_count == 1  # "Prefix cache hit rate: GPU: 0.00%, CPU: 90.00%"
    assert f.available_kv_cache_gib == 5.98


def test_restart_in_one_log_is_counted_and_its_config_wins(tmp_path):
    a = open(os.path.join(DATA, "constructed-v0.33.0-healthy.log"), encoding="utf-8").read()
    b = open(os.path.join(DATA, "constructed-v0.8.5-dp2.log"), encoding="utf-8").read()
    log = tmp_path / "two-runs.log"
    log.write_text(a + b)
    f = V.parse_file(str(log))
    assert f.server_starts == 2 and f.vllm_version == "0.8.5" and f.data_parallel_size == 2
    assert V.parse_log((a + b).split("\n")[:-1]).to_json_facts() == f.to_json_facts()
