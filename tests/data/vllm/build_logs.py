"""Build the constructed vLLM logs of this folder from the format strings in
docs/reference/vllm-logs.md (one per version family, the error cases, and the seed
scenario). Run it again after changing it; the logs are committed.

    python tests/data/vllm/build_logs.py

Every log here that does not come from a real run is named
``constructed-*.log``; its format strings are the ones vLLM's source prints
(docs/reference/vllm-logs.md describes them), its numbers are made up but
consistent (KV tokens = KV memory / bytes per token of the model, per
docs/reference/kv-cache.md).
"""

from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))
ANSI_ON, ANSI_OFF = "\x1b[1;36m", "\x1b[0;0m"
GIB = 2**30


def ts(i: int, day: str = "10-14", base: int = 15 * 3600 + 30 * 60) -> str:
    t = base + i
    return f"{day} {t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}"


class Log:
    def __init__(self, style: str, ansi: bool = False, docker: bool = False) -> None:
        self.style = style  # "v06" (no brackets, no prefix), "v08" (brackets), "v10" (process prefix)
        self.ansi = ansi
        self.docker = docker
        self.lines = []
        self.t = 0

    def tick(self, s: int = 1) -> None:
        self.t += s

    def log(self, level: str, src: str, msg: str, proc: str = "APIServer pid=2210") -> None:
        if self.style == "v06":
            line = f"{level} {ts(self.t)} {src}] {msg}"
        elif self.style == "v08":
            line = f"{level} {ts(self.t)} [{src}] {msg}"
            if proc.startswith("VllmWorker"):
                line = f"({proc}) " + line
        else:
            p = f"({proc})"
            if self.ansi:
                p = ANSI_ON + p + ANSI_OFF
            line = f"{p} {level} {ts(self.t)} [{src}] {msg}"
        self.raw(line)

    def raw(self, line: str) -> None:
        if self.docker:
            line = f"2025-10-14T15:{30 + self.t // 60 % 30:02d}:{self.t % 60:02d}.{self.t * 7919 % 1000000:06d}123Z " + line
        self.lines.append(line)

    def uvicorn_ready(self, pid: int) -> None:
        self.raw(f"INFO:     Started server process [{pid}]")
        self.raw("INFO:     Waiting for application startup.")
        self.raw("INFO:     Application startup complete.")

    def access(self, n: int, path: str = "/v1/chat/completions") -> None:
        for i in range(n):
            self.raw(f"INFO:     10.140.57.{10 + i % 50}:{40000 + i * 7 % 20000} - \"POST {path} HTTP/1.1\" 200 OK")

    def write(self, name: str) -> None:
        with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(self.lines) + "\n")


def v1_stats(engine: int, prompt: float, gen: float, running: int, waiting: int, kv: float,
             prefix: float | None = None, dev: str = "GPU", extra: str = "") -> str:
    s = (f"Engine {engine:03d}: Avg prompt throughput: {prompt:.1f} tokens/s, Avg generation throughput: {gen:.1f} "
         f"tokens/s, Running: {running} reqs, Waiting: {waiting} reqs, {extra}{dev} KV cache usage: {kv:.1f}%")
    if prefix is not None:
        s += f", Prefix cache hit rate: {prefix:.1f}%"
    return s


# ---------------------------------------------------------------------------
# the seed scenario (vLLM 0.11, ANSI process prefixes)
# ---------------------------------------------------------------------------

def seed() -> None:
    """Qwen3-VL-2B on 4 PCIe GPUs with TP=4, --enforce-eager, 8 running
    requests, KV usage 1.6%, --disable-log-requests (the seed document)."""
    L = Log("v10", ansi=True)
    api, core = "APIServer pid=2210", "EngineCore_DP0 pid=2391"
    workers = [f"Worker_TP{i} pid={2460 + i}" for i in range(4)]
    model = "Qwen/Qwen3-VL-2B-Instruct"
    L.log("INFO", "api_server.py:1839", "vLLM API server version 0.11.0", api)
    L.log("INFO", "utils.py:233", "non-default args: {'model_tag': 'Qwen/Qwen3-VL-2B-Instruct', 'host': '0.0.0.0', "
          "'port': 8004, 'model': 'Qwen/Qwen3-VL-2B-Instruct', 'served_model_name': ['qwen3-vl'], "
          "'tensor_parallel_size': 4, 'enforce_eager': True, 'disable_log_requests': True}", api)
    L.log("WARNING", "arg_utils.py:1900", "--disable-log-requests is deprecated and will be removed in v0.12. "
          "Use --enable-log-requests instead.", api)
    L.tick(6)
    L.log("INFO", "model.py:547", "Resolved architecture: Qwen3VLForConditionalGeneration", api)
    L.log("INFO", "model.py:1510", "Using max model len 262144", api)
    L.log("INFO", "scheduler.py:205", "Chunked prefill is enabled with max_num_batched_tokens=2048.", api)
    L.log("INFO", "__init__.py:381", "Cudagraph is disabled under eager mode", api)
    L.tick(4)
    L.log("INFO", "core.py:644", "Waiting for init message from front-end.", core)
    L.log("INFO", "core.py:77", "Initializing a V1 LLM engine (v0.11.0) with config: model='Qwen/Qwen3-VL-2B-Instruct', "
          "speculative_config=None, tokenizer='Qwen/Qwen3-VL-2B-Instruct', skip_tokenizer_init=False, "
          "tokenizer_mode=auto, revision=None, tokenizer_revision=None, trust_remote_code=False, dtype=torch.bfloat16, "
          "max_seq_len=262144, download_dir=None, load_format=auto, tensor_parallel_size=4, pipeline_parallel_size=1, "
          "data_parallel_size=1, disable_custom_all_reduce=False, quantization=None, enforce_eager=True, "
          "kv_cache_dtype=auto, device_config=cuda, structured_outputs_config=StructuredOutputsConfig(backend='auto', "
          "disable_fallback=False, disable_any_whitespace=False, disable_additional_properties=False, "
          "reasoning_parser=''), observability_config=ObservabilityConfig(show_hidden_metrics_for_version=None, "
          "otlp_traces_endpoint=None, collect_detailed_traces=None), seed=0, served_model_name=qwen3-vl, "
          "enable_prefix_caching=True, chunked_prefill_enabled=True, pooler_config=None, "
          "compilation_config={'level': 0, 'debug_dump_path': None, 'cache_dir': '', 'backend': '', "
          "'custom_ops': [], 'splitting_ops': None, 'use_inductor': True, 'cudagraph_mode': <CUDAGraphMode.NONE: 0>, "
          "'use_cudagraph': True, 'cudagraph_capture_sizes': [], 'max_capture_size': 0}", core)
    L.log("INFO", "multiproc_executor.py:720", "Creating 4 worker processes", core)
    for i, w in enumerate(workers):
        L.log("INFO", "parallel_state.py:1208", f"rank {i} in world size 4 is assigned as DP rank 0, PP rank 0, "
              f"TP rank {i}, EP rank {i}", w)
    L.tick(3)
    for w in workers:
        L.log("WARNING", "custom_all_reduce.py:144", "Custom allreduce is disabled because it's not supported on more "
              "than two PCIe-only GPUs. To silence this warning, specify disable_custom_all_reduce=True explicitly.", w)
    L.log("INFO", "gpu_model_runner.py:2602", f"Starting to load model {model}...", workers[0])
    L.tick(7)
    L.log("INFO", "default_loader.py:267", "Loading weights took 5.83 seconds", workers[0])
    L.log("INFO", "gpu_model_runner.py:2634", "Model loading took 1.1042 GiB and 6.512375 seconds", workers[0])
    L.tick(9)
    kv_gib = 31.62
    bpt = 2 * 28 * (8 // 4) * 128 * 2  # 28,672 bytes per token per GPU at TP=4
    tokens = int(kv_gib * GIB // bpt)
    L.log("INFO", "gpu_worker.py:298", f"Available KV cache memory: {kv_gib:.2f} GiB", workers[0])
    L.log("INFO", "kv_cache_utils.py:1087", f"GPU KV cache size: {tokens:,} tokens", core)
    L.log("INFO", "kv_cache_utils.py:1091", f"Maximum concurrency for 262,144 tokens per request: "
          f"{tokens / 262144:.2f}x", core)
    L.log("INFO", "core.py:210", "init engine (profile, create kv cache, warmup model) took 12.48 seconds", core)
    L.tick(2)
    L.log("INFO", "api_server.py:1634", "Supported_tasks: ['generate']", api)
    L.log("INFO", "api_server.py:1912", "Starting vLLM API server 0 on http://0.0.0.0:8004", api)
    L.log("INFO", "launcher.py:34", "Available routes are:", api)
    for r in ("/openapi.json", "/health", "/v1/models", "/v1/chat/completions", "/v1/completions"):
        L.log("INFO", "launcher.py:42", f"Route: {r}, Methods: GET", api)
    L.uvicorn_ready(2210)
    L.raw("INFO:     127.0.0.1:51234 - \"GET /v1/models HTTP/1.1\" 200 OK")
    # steady state: 8 concurrent requests (the evaluation harness's limit)
    pattern = [(78.5, 412.2, 8, 1.6, 72.0), (81.2, 405.9, 8, 1.5, 72.4), (76.0, 418.8, 8, 1.6, 71.8),
               (79.9, 409.1, 7, 1.4, 72.1), (80.4, 414.5, 8, 1.6, 72.3), (77.7, 410.0, 8, 1.5, 72.0)]
    for k in range(30):
        L.tick(10)
        L.access(6)
        p, g, r, kv, pre = pattern[k % len(pattern)]
        L.log("INFO", "loggers.py:127", v1_stats(0, p, g, r, 0, kv, pre), api)
    L.tick(10)
    L.log("INFO", "loggers.py:127", v1_stats(0, 0.0, 52.3, 0, 0, 0.0, 72.0), api)
    L.write("constructed-seed-qwen3-vl-2b-tp4-eager-v0.11.log")


# ---------------------------------------------------------------------------
# one log per version family
# ---------------------------------------------------------------------------

def v063() -> None:
    """0.6.3 V0: no brackets, no process prefix, Namespace args, GPU blocks."""
    L = Log("v06")
    L.log("INFO", "api_server.py:528", "vLLM API server version 0.6.3.post1")
    L.log("INFO", "api_server.py:529", "args: Namespace(host=None, port=8000, uvicorn_log_level='info', "
          "allow_credentials=False, allowed_origins=['*'], api_key=None, lora_modules=None, chat_template=None, "
          "response_role='assistant', model='meta-llama/Llama-3.1-8B-Instruct', tokenizer=None, "
          "load_format='auto', dtype='auto', kv_cache_dtype='auto', max_model_len=32768, "
          "distributed_executor_backend=None, pipeline_parallel_size=1, tensor_parallel_size=2, block_size=16, "
          "enable_prefix_caching=False, swap_space=4, gpu_memory_utilization=0.9, max_num_batched_tokens=None, "
          "max_num_seqs=256, enforce_eager=False, disable_custom_all_reduce=False, quantization=None, "
          "speculative_model=None, num_speculative_tokens=None, served_model_name=['llama8b'], "
          "disable_log_stats=False, disable_log_requests=True, max_log_len=None, "
          "middleware=[], return_tokens_as_token_ids=False, disable_frontend_multiprocessing=False)")
    L.log("INFO", "llm_engine.py:237", "Initializing an LLM engine (v0.6.3.post1) with config: "
          "model='meta-llama/Llama-3.1-8B-Instruct', speculative_config=None, tokenizer='meta-llama/Llama-3.1-8B-Instruct', "
          "skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, override_neuron_config=None, "
          "rope_scaling=None, rope_theta=None, tokenizer_revision=None, trust_remote_code=False, dtype=torch.bfloat16, "
          "max_seq_len=32768, download_dir=None, load_format=LoadFormat.AUTO, tensor_parallel_size=2, "
          "pipeline_parallel_size=1, disable_custom_all_reduce=False, quantization=None, enforce_eager=False, "
          "kv_cache_dtype=auto, quantization_param_path=None, device_config=cuda, "
          "decoding_config=DecodingConfig(guided_decoding_backend='outlines'), observability_config=ObservabilityConfig("
          "otlp_traces_endpoint=None, collect_model_forward_time=False, collect_model_execute_time=False), seed=0, "
          "served_model_name=llama8b, use_v2_block_manager=True, num_scheduler_steps=1, chunked_prefill_enabled=False "
          "multi_step_stream_outputs=True, enable_prefix_caching=False, use_async_output_proc=True, "
          "use_cached_outputs=True, mm_processor_kwargs=None)")
    L.tick(20)
    L.log("INFO", "model_runner.py:1056", "Starting to load model meta-llama/Llama-3.1-8B-Instruct...")
    L.tick(30)
    L.log("INFO", "model_runner.py:1067", "Loading model weights took 7.5122 GB")
    bpt = 2 * 32 * (8 // 2) * 128 * 2
    blocks = int(27.5 * GIB // (bpt * 16))
    L.log("INFO", "distributed_gpu_executor.py:57", f"# GPU blocks: {blocks}, # CPU blocks: 4096")
    L.log("INFO", "distributed_gpu_executor.py:61", f"Maximum concurrency for 32768 tokens per request: "
          f"{blocks * 16 / 32768:.2f}x")
    L.log("INFO", "model_runner.py:1385", "Capturing the model for CUDA graphs. This may lead to unexpected "
          "consequences if the model is not static.")
    L.tick(15)
    L.log("INFO", "model_runner.py:1513", "Graph capturing finished in 15 secs, took 0.58 GiB")
    L.log("INFO", "launcher.py:19", "Available routes are:")
    L.raw("INFO:     Started server process [4411]")
    L.raw("INFO:     Waiting for application startup.")
    L.raw("INFO:     Application startup complete.")
    L.raw("INFO:     Uvicorn running on socket ('0.0.0.0', 8000) (Press CTRL+C to quit)")
    for k in range(12):
        L.tick(5)
        L.access(20, "/v1/completions")
        kv = 91.0 + k * 0.5
        L.log("INFO", "metrics.py:349", f"Avg prompt throughput: {2400.5 + k:.1f} tokens/s, Avg generation throughput: "
              f"{1830.2 - k:.1f} tokens/s, Running: 61 reqs, Swapped: 0 reqs, Pending: {12 + k} reqs, "
              f"GPU KV cache usage: {kv:.1f}%, CPU KV cache usage: 0.0%.")
        L.log("INFO", "metrics.py:365", "Prefix cache hit rate: GPU: 0.00%, CPU: 0.00%")
        if k % 4 == 3:
            L.log("WARNING", "scheduler.py:1089", f"Sequence group cmpl-{k}abc is preempted by "
                  "PreemptionMode.RECOMPUTE mode because there is not enough KV cache space. This can affect the "
                  "end-to-end performance. Increase gpu_memory_utilization or tensor_parallel_size to provide more "
                  f"KV cache memory. total_num_cumulative_preemption={k // 4 + 1}")
    L.write("constructed-v0.6.3-v0-kv-full.log")


def v085() -> None:
    """0.8.5 V1: brackets, VllmWorker rank prefix, Namespace args, DP=2, two-line KV report."""
    L = Log("v08")
    L.log("INFO", "api_server.py:1043", "vLLM API server version 0.8.5")
    L.log("INFO", "api_server.py:1044", "args: Namespace(subparser='serve', model_tag='Qwen/Qwen2.5-7B-Instruct', "
          "config='', host='0.0.0.0', port=8000, uvicorn_log_level='info', disable_uvicorn_access_log=False, "
          "api_key=None, model='Qwen/Qwen2.5-7B-Instruct', dtype='auto', max_model_len=8192, "
          "pipeline_parallel_size=1, tensor_parallel_size=1, data_parallel_size=2, enable_prefix_caching=None, "
          "gpu_memory_utilization=0.9, max_num_batched_tokens=None, max_num_seqs=None, enforce_eager=False, "
          "disable_log_requests=False, speculative_config=None, dispatch_function=<function ServeSubcommand.cmd at "
          "0x7f>)")
    for dp in range(2):
        proc = f"EngineCore_{dp}"
        L.log("INFO", "core.py:58", "Initializing a V1 LLM engine (v0.8.5) with config: model='Qwen/Qwen2.5-7B-Instruct', "
              "speculative_config=None, tokenizer='Qwen/Qwen2.5-7B-Instruct', skip_tokenizer_init=False, "
              "tokenizer_mode=auto, revision=None, override_neuron_config=None, tokenizer_revision=None, "
              "trust_remote_code=False, dtype=torch.bfloat16, max_seq_len=8192, download_dir=None, "
              "load_format=LoadFormat.AUTO, tensor_parallel_size=1, pipeline_parallel_size=1, "
              "disable_custom_all_reduce=False, quantization=None, enforce_eager=False, kv_cache_dtype=auto, "
              "device_config=cuda, seed=None, served_model_name=Qwen/Qwen2.5-7B-Instruct, num_scheduler_steps=1, "
              "multi_step_stream_outputs=True, enable_prefix_caching=True, chunked_prefill_enabled=True, "
              "use_async_output_proc=True, compilation_config={\"level\":3,\"splitting_ops\":[],\"use_inductor\":true}", proc)
    L.log("INFO", "gpu_model_runner.py:1329", "Starting to load model Qwen/Qwen2.5-7B-Instruct...",
          "VllmWorker rank=0 pid=101")
    L.tick(12)
    L.log("INFO", "gpu_model_runner.py:1347", "Model loading took 14.2487 GiB and 11.302123 seconds",
          "VllmWorker rank=0 pid=101")
    L.log("INFO", "backends.py:420", "Using cache directory: /root/.cache/vllm/torch_compile_cache/abc/rank_0_0 for vLLM's "
          "torch.compile")
    L.tick(20)
    L.log("INFO", "monitor.py:33", "torch.compile takes 21.37 s in total")
    for _dp in range(2):
        L.log("INFO", "kv_cache_utils.py:634", "GPU KV cache size: 432,160 tokens")
        L.log("INFO", "kv_cache_utils.py:637", "Maximum concurrency for 8,192 tokens per request: 52.75x")
    L.tick(15)
    L.log("INFO", "gpu_model_runner.py:1686", "Graph capturing finished in 14 secs, took 0.53 GiB")
    L.log("INFO", "core.py:159", "init engine (profile, create kv cache, warmup model) took 52.60 seconds")
    L.log("INFO", "api_server.py:1090", "Starting vLLM API server on http://0.0.0.0:8000")
    L.uvicorn_ready(77)
    for k in range(8):
        L.tick(10)
        L.access(30)
        for dp in range(2):
            L.log("INFO", "loggers.py:111", v1_stats(dp, 3100.0 + 10 * k, 2210.5 - k, 124 + dp, 0, 18.5 + k, 41.2))
    L.write("constructed-v0.8.5-dp2.log")


def v0201() -> None:
    """0.20.1: non-default args dict, optional stats fields (Deferred, Preemptions), docker timestamps."""
    L = Log("v10", docker=True)
    api, core = "APIServer pid=1", "EngineCore pid=106"
    L.log("INFO", "utils.py:233", "non-default args: {'host': '0.0.0.0', 'model': 'meta-llama/Llama-3.1-70B-Instruct', "
          "'max_model_len': 131072, 'served_model_name': ['llama70b'], 'tensor_parallel_size': 4, "
          "'gpu_memory_utilization': 0.95, 'max_num_seqs': 64, 'enable_prefix_caching': True}", api)
    L.log("INFO", "core.py:109", "Initializing a V1 LLM engine (v0.20.1) with config: "
          "model='meta-llama/Llama-3.1-70B-Instruct', speculative_config=None, tokenizer='meta-llama/Llama-3.1-70B-Instruct', "
          "dtype=torch.bfloat16, max_seq_len=131072, tensor_parallel_size=4, pipeline_parallel_size=1, "
          "data_parallel_size=1, disable_custom_all_reduce=False, quantization=None, enforce_eager=False, "
          "kv_cache_dtype=auto, device_config=cuda, enable_prefix_caching=True, enable_chunked_prefill=True", core)
    L.log("INFO", "gpu_model_runner.py:3100", "Model loading took 32.8851 GiB and 61.551 seconds", "Worker_TP0 pid=201")
    L.log("INFO", "gpu_worker.py:508", "Available KV cache memory: 38.20 GiB", "Worker_TP0 pid=201")
    toks = int(38.20 * GIB // (2 * 80 * 2 * 128 * 2))
    L.log("INFO", "kv_cache_utils.py:1708", f"GPU KV cache size: {toks:,} tokens", core)
    L.log("INFO", "kv_cache_utils.py:1709", f"Maximum concurrency for 131,072 tokens per request: {toks / 131072:.2f}x", core)
    L.log("INFO", "core.py:250", "init engine (profile, create kv cache, warmup model) took 95.12 seconds", core)
    L.log("INFO", "api_server.py:1900", "Starting vLLM API server 0 on http://0.0.0.0:8000", api)
    L.uvicorn_ready(1)
    for k in range(10):
        L.tick(10)
        L.access(10)
        L.log("INFO", "loggers.py:248", v1_stats(0, 9000.0, 1500.0 + k, 64, 20 + k, 55.0 + k, 10.0,
                                                  extra=f"Deferred: {k} reqs, Preemptions: 0, "), api)
    L.write("constructed-v0.20.1-llama70b-capped.log")


def v0330() -> None:
    """0.33: one-line KV report, 'GiB memory and', prefix rate only once there is data, one aggregated line."""
    L = Log("v10")
    api, core = "APIServer pid=900", "EngineCore pid=950"
    L.log("INFO", "api_utils.py:280", "vLLM server version 0.33.0, serving model Qwen/Qwen2.5-7B-Instruct", api)
    L.log("INFO", "api_utils.py:286", "non-default args: {'model_tag': 'Qwen/Qwen2.5-7B-Instruct', 'port': 8011, "
          "'api_key': '***', 'model': 'Qwen/Qwen2.5-7B-Instruct', 'max_model_len': 16384, "
          "'served_model_name': ['qwen7b'], 'max_num_seqs': 512, 'max_num_batched_tokens': 16384}", api)
    L.log("INFO", "core.py:133", "Initializing a V1 LLM engine (v0.33.0) with config: model='Qwen/Qwen2.5-7B-Instruct', "
          "dtype=torch.bfloat16, max_seq_len=16384, tensor_parallel_size=1, pipeline_parallel_size=1, "
          "data_parallel_size=1, disable_custom_all_reduce=False, quantization=None, enforce_eager=False, "
          "kv_cache_dtype=auto, device_config=cuda, served_model_name=qwen7b, enable_prefix_caching=True, "
          "enable_chunked_prefill=True", core)
    L.log("INFO", "gpu_model_runner.py:4100", "Model loading took 14.2500 GiB memory and 9.812 seconds", "Worker pid=990")
    L.log("INFO", "kv_cache_utils.py:2327", "GPU KV cache size: 2,154,816 tokens, Maximum concurrency for 16,384 tokens "
          "per request: 131.52x", core)
    L.log("INFO", "core.py:402", "init engine (profile, create kv cache, warmup model) took 41.02 s", core)
    L.log("INFO", "entry.py:140", "Starting vLLM server on http://0.0.0.0:8011", api)
    L.uvicorn_ready(900)
    L.tick(10)
    L.log("INFO", "loggers.py:335", v1_stats(0, 0.0, 0.0, 0, 0, 0.0), api)  # no prefix rate yet
    for k in range(5):
        L.tick(10)
        L.access(40)
        L.log("INFO", "loggers.py:335", v1_stats(0, 5200.0, 4100.0 + 10 * k, 180 + k, 0, 40.0 + k, 63.5), api)
    L.tick(10)
    L.log("INFO", "loggers.py:335", "2 Engines Aggregated: Avg prompt throughput: 1,200.0 tokens/s, Avg generation "
          "throughput: 900.0 tokens/s, Running: 20 reqs, Waiting: 0 reqs, GPU KV cache usage: 5.0%, Prefix cache "
          "hit rate: 50.0%", api)
    L.write("constructed-v0.33.0-healthy.log")


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def errors() -> None:
    cases = {
        "cuda-oom": ("v10", "(EngineCore_DP0 pid=77) ERROR 10-14 15:31:02 [core.py:708] torch.OutOfMemoryError: CUDA "
                     "out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 39.39 GiB of which "
                     "1.21 GiB is free. Including non-PyTorch memory, this process has 38.17 GiB memory in use."),
        "no-cache-memory": ("v08", "ERROR 10-14 15:31:02 [core.py:390] ValueError: No available memory for the cache "
                            "blocks. Try increasing `gpu_memory_utilization` when initializing the engine."),
        "kv-too-small-v0": ("v06", "ValueError: The model's max seq len (131072) is larger than the maximum number of "
                            "tokens that can be stored in KV cache (52480). Try increasing `gpu_memory_utilization` "
                            "or decreasing `max_model_len` when initializing the engine."),
        "kv-too-small-v011": ("v10", "(EngineCore_DP0 pid=77) ValueError: To serve at least one request with the "
                              "models's max seq len (262144), (28.00 GiB KV cache is needed, which is larger than the "
                              "available KV cache memory (5.98 GiB). Based on the available memory, the estimated "
                              "maximum model length is 55,968. Try increasing `gpu_memory_utilization` or decreasing "
                              "`max_model_len` when initializing the engine."),
        "free-memory-v033": ("v10", "(EngineCore pid=77) ValueError: Free memory on device cuda:0 (12.5/39.39 GiB) on "
                             "startup is less than desired GPU memory utilization (0.92, 36.24 GiB). Decrease GPU "
                             "memory utilization or reduce GPU memory used by other processes."),
        "port-in-use": ("v10", "(APIServer pid=70) OSError: [Errno 98] Address already in use"),
        "nccl": ("v10", "(Worker_TP1 pid=81) ERROR 10-14 15:31:02 [multiproc_executor.py:585] "
                 "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:317, "
                 "unhandled cuda error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5"),
    }
    for name, (style, line) in cases.items():
        L = Log(style)
        L.log("INFO", "api_server.py:1839", "vLLM API server version 0.11.0")
        L.log("INFO", "core.py:77", "Initializing a V1 LLM engine (v0.11.0) with config: model='Qwen/Qwen2.5-7B-Instruct', "
              "dtype=torch.bfloat16, max_seq_len=262144, tensor_parallel_size=2, pipeline_parallel_size=1, "
              "data_parallel_size=1, enforce_eager=False, kv_cache_dtype=auto, device_config=cuda", "EngineCore_DP0 pid=77")
        L.raw("Traceback (most recent call last):")
        L.raw("  File \"/opt/vllm/v1/engine/core.py\", line 699, in run_engine_core")
        L.raw(line)
        if name != "port-in-use":
            L.raw("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): "
                  "{'EngineCore_DP0': 1}")
        L.write(f"constructed-error-{name}.log")


def main() -> None:
    seed()
    v063()
    v085()
    v0201()
    v0330()
    errors()


if __name__ == "__main__":
    main()
