"""What a vLLM log shows: :class:`LogFacts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.vllmlog.errors import ErrorTracker
from pbsvllm.vllmlog.multinode import MultiNodeFacts
from pbsvllm.vllmlog.stats import EngineStats, StatsSeries

EVIDENCE_CAP = 5


@dataclass
class LogFacts:
    """What a vLLM log shows. ``None`` means the log does not say."""

    lines: int = 0
    vllm_version: Optional[str] = None
    engine_version: Optional[str] = None  # "V0" / "V1"
    model: Optional[str] = None
    served_model_name: Optional[str] = None
    # the user's flags: 'non-default args' (>=0.10.2) or the whole Namespace (<=0.9)
    args: Dict[str, Any] = field(default_factory=dict)
    args_source: Optional[str] = None  # "non_default_args" | "namespace"
    # the engine config line, parsed (only scalar keys kept)
    engine_config: Dict[str, Any] = field(default_factory=dict)
    tensor_parallel_size: Optional[int] = None
    pipeline_parallel_size: Optional[int] = None
    data_parallel_size: Optional[int] = None
    enforce_eager: Optional[bool] = None
    max_model_len: Optional[int] = None
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    gpu_memory_utilization: Optional[float] = None
    dtype: Optional[str] = None
    kv_cache_dtype: Optional[str] = None
    quantization: Optional[str] = None
    enable_prefix_caching: Optional[bool] = None
    enable_chunked_prefill: Optional[bool] = None
    api_server_count: Optional[int] = None
    device: Optional[str] = None  # "cuda", "cpu"... from the config line
    platform_hint: Optional[str] = None  # "cpu"/"cuda" from the source files that log (cpu_worker.py...)
    block_size: Optional[int] = None
    # KV cache
    kv_cache_tokens: Optional[int] = None  # per engine (first engine reporting)
    kv_cache_tokens_by_engine: Dict[int, int] = field(default_factory=dict)
    kv_cache_device: Optional[str] = None
    max_concurrency: Optional[float] = None
    max_concurrency_tokens_per_request: Optional[int] = None
    gpu_blocks: Optional[int] = None
    cpu_blocks: Optional[int] = None
    available_kv_cache_gib: Optional[float] = None
    # model load / init
    model_load_gib: Optional[float] = None
    model_load_seconds: Optional[float] = None
    graph_capture_seconds: Optional[float] = None
    graph_capture_gib: Optional[float] = None
    compile_seconds: Optional[float] = None
    init_engine_seconds: Optional[float] = None
    # warnings
    custom_allreduce_pcie_warning: bool = False
    custom_allreduce_disabled_reason: Optional[str] = None
    cudagraph_disabled: bool = False
    stats_logging_disabled: bool = False  # more than one API server
    # runtime
    engine_stats_lines: int = 0
    stats: Dict[str, StatsSeries] = field(default_factory=dict)  # "0", "1"... or "all"
    last_stats: Optional[EngineStats] = None
    v0_preemption_warnings: int = 0
    phases: Dict[str, int] = field(default_factory=dict)  # phase -> first line number
    phase: Optional[str] = None  # the latest phase seen
    server_starts: int = 0
    ready_count: int = 0
    errors: ErrorTracker = field(default_factory=ErrorTracker)
    multinode: MultiNodeFacts = field(default_factory=MultiNodeFacts)
    evidence: Dict[str, List[Tuple[int, str]]] = field(default_factory=dict)
    parse_problems: int = 0
    first_parse_problem: Optional[str] = None

    # ---- derived -------------------------------------------------------
    @property
    def error(self) -> Optional[str]:
        return self.errors.root_cause

    @property
    def last_kv_cache_usage_pct(self) -> Optional[float]:
        return self.last_stats.kv_cache_usage_pct if self.last_stats else None

    def engines(self) -> List[str]:
        return sorted(self.stats)

    def add_evidence(self, key: str, line_no: int, text: str) -> None:
        lst = self.evidence.setdefault(key, [])
        if len(lst) < EVIDENCE_CAP:
            lst.append((line_no, text[:1000]))

    def first_evidence(self, key: str) -> Optional[Tuple[int, str]]:
        lst = self.evidence.get(key)
        return lst[0] if lst else None

    def to_json_facts(self) -> Dict[str, Any]:
        """The ``facts`` object of ``doctor --format json``: the issue's key
        names, each present only when the log shows it (``error`` always)."""
        d: Dict[str, Any] = {}

        def put(k: str, v: Any) -> None:
            if v is not None:
                d[k] = v

        put("vllm_version", self.vllm_version)
        put("engine_version", self.engine_version)
        put("model", self.model)
        put("served_model_name", self.served_model_name)
        put("tensor_parallel_size", self.tensor_parallel_size)
        put("pipeline_parallel_size", self.pipeline_parallel_size)
        put("data_parallel_size", self.data_parallel_size)
        put("enforce_eager", self.enforce_eager)
        put("max_num_seqs", self.max_num_seqs)
        put("max_num_batched_tokens", self.max_num_batched_tokens)
        put("gpu_memory_utilization", self.gpu_memory_utilization)
        put("max_model_len", self.max_model_len)
        put("dtype", self.dtype)
        put("kv_cache_dtype", self.kv_cache_dtype)
        put("quantization", self.quantization)
        put("enable_prefix_caching", self.enable_prefix_caching)
        put("enable_chunked_prefill", self.enable_chunked_prefill)
        put("api_server_count", self.api_server_count)
        put("kv_cache_tokens", self.kv_cache_tokens)
        put("kv_cache_device", self.kv_cache_device)
        put("max_concurrency", self.max_concurrency)
        put("max_concurrency_tokens_per_request", self.max_concurrency_tokens_per_request)
        put("available_kv_cache_gib", self.available_kv_cache_gib)
        put("model_load_gib", self.model_load_gib)
        put("model_load_seconds", self.model_load_seconds)
        put("init_engine_seconds", self.init_engine_seconds)
        d["custom_allreduce_pcie_warning"] = self.custom_allreduce_pcie_warning
        d["engine_stats_lines"] = self.engine_stats_lines
        put("last_kv_cache_usage_pct", self.last_kv_cache_usage_pct)
        if self.stats_logging_disabled:
            d["stats_logging_disabled"] = True
        d["error"] = self.error
        if self.errors.suggested_max_model_len is not None:
            d["suggested_max_model_len"] = self.errors.suggested_max_model_len
        put("phase", self.phase)
        if self.server_starts > 1:
            d["server_starts"] = self.server_starts
        return d
