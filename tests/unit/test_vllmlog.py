"""The vLLM log parser on real logs (reference samples, our own CPU runs)
and on lines built from each version's format strings."""

import os

import pytest

from pbsvllm import vllmlog as V

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "vllm")


def sample(name):
    return os.path.join(DATA, name)


def read_lines(path):
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8", "replace").replace("\r\n", "\n").split("\n")


# ---------------------------------------------------------------- strip_line
@pytest.mark.parametrize(
    "raw",
    [
        "\x1b[1;36m(APIServer pid=13)\x1b[0;0m INFO 10-01 12:00:00 [api_server.py:1] hello",
        "(EngineCore_DP0 pid=27776) INFO 10-01 12:00:00 [api_server.py:1] hello",
        "(VllmWorker rank=2 pid=77) INFO 10-01 12:00:00 [api_server.py:1] hello",
        "2026-05-12T08:01:39.331095044Z (APIServer pid=1) INFO 10-01 12:00:00 [api_server.py:1] hello",
        "2026-05-12T08:01:39+02:00 \x1b[1;36m(APIServer pid=1)\x1b[0;0m INFO 10-01 12:00:00 [api_server.py:1] hello\r\n",
    ],
)
def test_strip_line_removes_wrappers(raw):
    assert V.strip_line(raw) == "INFO 10-01 12:00:00 [api_server.py:1] hello"


def test_split_line_reads_process_rank_and_both_header_layouts():
    a = V.split_line("(EngineCore_DP1 pid=27777) INFO 11-28 17:55:58 [kv_cache_utils.py:2327] CPU KV cache size: 1 tokens")
    assert (a.process, a.rank, a.level, a.source) == ("EngineCore_DP1", 1, "INFO", "kv_cache_utils.py:2327")
    assert a.message == "CPU KV cache size: 1 tokens"
    b = V.split_line("INFO 11-21 13:28:37 config.py:1136] Chunked prefill is enabled with max_num_batched_tokens=512.")
    assert (b.level, b.time, b.source) == ("INFO", "11-21 13:28:37", "config.py:1136")
    assert b.message.startswith("Chunked prefill")
    c = V.split_line("INFO:     Application startup complete.")
    assert (c.process, c.level, c.message) == ("", "", "INFO:     Application startup complete.")


# ---------------------------------------------------------------- stats lines
def test_stats_v1_with_gpu_word_and_prefix_rate():
    s = V.parse_stats_line(
        "(APIServer pid=3646) INFO 05-19 10:13:11 [loggers.py:271] Engine 000: Avg prompt throughput: 0.0 tokens/s, "
        "Avg generation throughput: 1055.3 tokens/s, Running: 18 reqs, Waiting: 43 reqs, GPU KV cache usage: 95.9%, "
        "Prefix cache hit rate: 0.0%"
    )
    assert s is not None
    assert (s.engine, s.generation_tokens_per_s, s.running, s.waiting) == (0, 1055.3, 18, 43)
    assert (s.kv_device, s.kv_cache_usage_pct, s.prefix_cache_hit_pct) == ("GPU", 95.9, 0.0)


def test_stats_v0_pending_swapped_and_two_kv_figures():
    s = V.parse_stats_line(
        "INFO 05-25 06:50:29 [metrics.py:486] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: "
        "15.5 tokens/s, Running: 1 reqs, Swapped: 0 reqs, Pending: 2 reqs, GPU KV cache usage: 0.0%, CPU KV cache usage: 0.1%."
    )
    assert s is not None
    assert (s.engine, s.running, s.waiting, s.swapped) == (None, 1, 2, 0)
    assert (s.kv_device, s.kv_cache_usage_pct, s.cpu_kv_cache_usage_pct) == ("GPU", 0.0, 0.1)


def test_stats_cpu_word_and_optional_fields_and_aggregated_prefix():
    s = V.parse_stats_line(
        "INFO 05-12 08:01:39 [loggers.py:271] 2 Engines Aggregated: Avg prompt throughput: 6,335.3 tokens/s, "
        "Avg generation throughput: 4.8 tokens/s, Running: 9 reqs, Waiting: 0 reqs, Deferred: 1 reqs, Preemptions: 3, "
        "Corrupted: 0 reqs, CPU KV cache usage: 62.8%, KV fetch: 0 reqs, External prefix cache hit rate: 5.0%, "
        "MM cache hit rate: 1.0%"
    )
    assert s is not None
    assert s.engines_aggregated == 2 and s.engine is None
    assert s.prompt_tokens_per_s == 6335.3
    assert (s.deferred, s.preemptions, s.corrupted) == (1, 3, 0)
    assert (s.kv_device, s.kv_cache_usage_pct) == ("CPU", 62.8)
    # 0.33 prints "Prefix cache hit rate" only once there is data; the
    # external rate must not be taken for it
    assert s.prefix_cache_hit_pct is None
    assert (s.external_prefix_cache_hit_pct, s.mm_cache_hit_pct) == (5.0, 1.0)


@pytest.mark.parametrize(
    "line",
    [
        "INFO:     127.0.0.1:58120 - \"POST /v1/completions HTTP/1.1\" 200 OK",
        "Avg prompt throughput: 1.0 tokens/s",  # truncated
        "SpecDecoding metrics: Mean acceptance length: 2.20, Accepted throughput: 15.60 tokens/s",
        "",
    ],
)
def test_non_stats_lines_give_none(line):
    assert V.parse_stats_line(line) is None


# ---------------------------------------------------------------- errors, phases
@pytest.mark.parametrize(
    "line,kind",
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 39.39 GiB of which 1.2 GiB is free.", "cuda_oom"),
        ("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity; 14.5 GiB already allocated; 3 MiB free)", "cuda_oom"),
        ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.", "no_cache_memory"),
        ("ValueError: The model's max seq len (131072) is larger than the maximum number of tokens that can be stored in KV cache (42000). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.", "kv_cache_too_small"),
        ("(EngineCore_DP0 pid=9) ValueError: To serve at least one request with the models's max seq len (262144), (32.00 GiB KV cache is needed, which is larger than the available KV cache memory (5.98 GiB). Based on the available memory, the estimated maximum model length is 48960. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.", "kv_cache_too_small"),
        ("ValueError: Free memory on device (30.1/39.39 GiB) on startup is less than desired GPU memory utilization (0.9, 35.45 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.", "free_memory_low"),
        ("ValueError: Free memory on device cuda:0 (30.1/39.39 GiB) on startup is less than desired GPU memory utilization (0.9, 35.45 GiB).", "free_memory_low"),
        ("(APIServer pid=1) OSError: [Errno 98] Address already in use", "port_in_use"),
        ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled cuda error", "nccl"),
        ("RuntimeError: NCCL error: ncclInternalError: Internal check failed.", "nccl"),
        ("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore_DP0': 1}", "engine_init_failed"),
        ("RuntimeError: Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0", "cpu_attention_unsupported"),
    ],
)
def test_classify_error(line, kind):
    assert V.classify_error(line) == kind


@pytest.mark.parametrize(
    "line",
    [
        "INFO 01-01 00:00:00 [utils.py:1] vLLM is using nccl==2.21.5",
        "WARNING 11-28 17:40:18 [system_utils.py:255] Found ulimit of 20000 ... fd limit errors like `OSError: [Errno 24] Too many open files`.",
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "INFO 01-01 00:00:00 [core.py:1] Initializing a V1 LLM engine (v0.11.0) with config: disable_custom_all_reduce=False",
    ],
)
def test_normal_lines_are_not_errors(line):
    assert V.classify_error(line) is None


@pytest.mark.parametrize(
    "line,phase",
    [
        ("(APIServer pid=1) INFO 11-28 17:40:18 [api_utils.py:286] non-default args: {'host': '127.0.0.1'}", "starting"),
        ("INFO 10-01 12:00:00 [api_server.py:1] vLLM API server version 0.6.3.post1", "starting"),
        ("(Worker pid=1) INFO 11-28 17:40:46 [cpu_model_runner.py:68] Starting to load model /path/to/tiny-llama...", "loading_weights"),
        ("(Worker pid=1) INFO 11-28 17:40:47 [cpu_model_runner.py:87] Warming up model for the compilation...", "compiling"),
        ("INFO 10-01 12:00:00 [gpu_model_runner.py:1] Graph capturing finished in 5 secs, took 0.50 GiB", "compiling"),
        ("(EngineCore pid=1) INFO 11-28 17:41:16 [kv_cache_utils.py:2327] CPU KV cache size: 2,097,152 tokens, Maximum concurrency for 256 tokens per request: 8192.00x", "kv_cache_allocated"),
        ("INFO 11-21 13:28:40 gpu_executor.py:122] # GPU blocks: 27050, # CPU blocks: 2048", "kv_cache_allocated"),
        ("INFO:     Application startup complete.", "ready"),
        ("(APIServer pid=1) INFO 11-28 17:52:09 [launcher.py:254] [shutdown] API server: shutdown triggered", "shutting_down"),
        ("INFO:     127.0.0.1:58120 - \"POST /v1/completions HTTP/1.1\" 200 OK", None),
    ],
)
def test_detect_phase(line, phase):
    assert V.detect_phase(line) == phase


def test_error_tracker_normal_shutdown_enginedead_is_not_a_failure():
    t = V.ErrorTracker()
    t.feed("[shutdown] API server: shutdown triggered", 1)
    t.feed("vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.", 2)
    assert not t.failed and t.engine_dead_after_shutdown == 1


def test_error_tracker_enginedead_without_shutdown_is_a_crash():
    t = V.ErrorTracker()
    t.feed("EngineCore encountered a fatal error.", 7)
    t.feed("vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.", 9)
    assert t.failed and t.root_cause == "engine_crashed" and t.crash_line == 7


def test_error_tracker_keeps_the_suggested_max_model_len():
    t = V.ErrorTracker()
    t.feed(
        "ValueError: To serve at least one request with the model's max seq len (262144), (32.00 GiB KV cache is needed, "
        "which is larger than the available KV cache memory (5.98 GiB). Based on the available memory, the estimated "
        "maximum model length is 48,960. Try increasing",
        3,
    )
    assert t.root_cause == "kv_cache_too_small" and t.suggested_max_model_len == 48960


# ---------------------------------------------------------------- real logs
def test_real_cpu_compiled_run():
    f = V.parse_file(sample("vllm-0.32.0-cpu-compiled.log"))
    assert f.vllm_version == "0.32.0" and f.engine_version == "V1"
    assert f.model == "/path/to/tiny-llama" and f.served_model_name == "tiny"
    assert (f.tensor_parallel_size, f.pipeline_parallel_size, f.data_parallel_size) == (1, 1, 1)
    assert f.enforce_eager is False and f.max_model_len == 256 and f.dtype == "bfloat16"
    assert f.enable_prefix_caching is True and f.enable_chunked_prefill is True
    assert f.kv_cache_tokens == 2097152 and f.kv_cache_device == "CPU"
    assert f.max_concurrency == 8192.0 and f.max_concurrency_tokens_per_request == 256
    assert f.init_engine_seconds == 30.71
    assert f.engine_stats_lines == 12 and f.last_kv_cache_usage_pct == 0.0
    assert f.stats["0"].summary()["max_generation_tokens_per_s"] == 479.9
    assert f.error is None and not f.errors.crashed and f.errors.engine_dead_after_shutdown == 1
    assert list(f.phases) == ["starting", "loading_weights", "compiling", "kv_cache_allocated", "ready", "shutting_down"]
    assert f.args["served_model_name"] == ["tiny"] and f.args_source == "non_default_args"
    assert f.parse_problems == 0


def test_real_cpu_eager_run():
    f = V.parse_file(sample("vllm-0.32.0-cpu-eager.log"))
    assert f.enforce_eager is True and f.cudagraph_disabled
    assert f.first_evidence("eager")[1].startswith("WARNING") and "Enforce eager set" in f.first_evidence("eager")[1]
    assert f.init_engine_seconds == 0.59 and f.error is None


def test_real_cpu_dp2_one_api_server_has_stats_per_engine():
    f = V.parse_file(sample("vllm-0.32.0-cpu-dp2-1apiserver.log"))
    assert f.data_parallel_size == 2
    assert sorted(f.stats) == ["0", "1"]
    assert f.stats["0"].count == f.stats["1"].count == 18 and f.engine_stats_lines == 36
    assert f.kv_cache_tokens_by_engine == {0: 2097152, 1: 2097152}
    assert f.stats["0"].summary()["max_running"] == 10
    assert not f.stats_logging_disabled and f.error is None


def test_real_cpu_dp2_two_api_servers_has_no_stats_and_says_why():
    f = V.parse_file(sample("vllm-0.32.0-cpu-dp2-2apiservers.log"))
    assert f.data_parallel_size == 2 and f.api_server_count == 2
    assert f.engine_stats_lines == 0 and f.stats_logging_disabled
    assert "ready" in f.phases and f.phase == "shutting_down"
    assert f.error is None


def test_real_cpu_crash_after_ready_is_classified():
    f = V.parse_file(sample("vllm-0.32.0-cpu-headdim16-crash.log"))
    assert "ready" in f.phases
    assert f.error == "cpu_attention_unsupported" and f.errors.crashed
    ev = f.first_evidence("error:cpu_attention_unsupported")
    assert ev is not None and "head_dim=16" in ev[1]
    assert read_lines(sample("vllm-0.32.0-cpu-headdim16-crash.log"))[ev[0] - 1].endswith(ev[1][-40:])


@pytest.mark.parametrize(
    "name",
    [
        "vllm-0.32.0-cpu-compiled.log",
        "vllm-0.32.0-cpu-eager.log",
        "vllm-0.32.0-cpu-dp2-1apiserver.log",
        "vllm-0.32.0-cpu-dp2-2apiservers.log",
        "vllm-0.32.0-cpu-headdim16-crash.log",
        "vllm-log-lines-by-version.txt",
    ],
)
def test_fast_file_path_equals_line_path(name):
    a = V.parse_file(sample(name))
    with open(sample(name), "rb") as fh:
        lines = fh.read().decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    b = V.parse_log(lines)
    assert a.to_json_facts() == b.to_json_facts()
    assert a.lines == b.lines == len(lines)
    assert a.evidence == b.evidence
    assert {k: s.summary() for k, s in a.stats.items()} == {k: s.summary() for k, s in b.stats.items()}


def test_gzip_log_gives_the_same_facts(tmp_path):
    import gzip

    src = sample("vllm-0.32.0-cpu-dp2-1apiserver.log")
    gz = tmp_path / "server.log.gz"
    with open(src, "rb") as fh, gzip.open(gz, "wb") as out:
        out.write(fh.read())
    a, b = V.parse_file(src), V.parse_file(str(gz))
    assert a.to_json_facts() == b.to_json_facts() and a.lines == b.lines and a.evidence == b.evidence


def test_unreadable_paths_raise_log_parse_error(tmp_path):
    from pbsvllm.errors import LogParseError

    with pytest.raises(LogParseError, match="not found"):
        V.parse_file(str(tmp_path / "missing.log"))
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(b"not gzip at all\n")
    with pytest.raises(LogParseError, match="compressed"):
        V.parse_file(str(bad))
