"""What the log shows about the node and the server: vLLM's defaults, the
node's shape (each value with where it came from), the current flags and
the load seen in the stats lines."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pbsvllm.doctor.model import LoadSummary, NodeShape
from pbsvllm.vllmlog import LogFacts

if TYPE_CHECKING:
    from pbsvllm.config import Profile

# ---------------------------------------------------------------------------
# vLLM defaults (docs/reference/vllm-flags-metrics.md, defaults)
# ---------------------------------------------------------------------------


def _ver(v: Optional[str]) -> Tuple[int, int, int]:
    from pbsvllm.flags import parse_version

    try:
        return parse_version(v or "")  # type: ignore[return-value]
    except Exception:
        return (0, 0, 0)


def vllm_defaults(
    version: Optional[str],
    engine: Optional[str],
    device: str,
    gpu_memory_gib: Optional[float],
    gpu_name: str = "",
    max_model_len: Optional[int] = None,
) -> Dict[str, Tuple[Optional[float], str]]:
    """vLLM's own defaults for the batch limits and memory utilization, each
    with where the number comes from; ``None`` when it depends on something
    unknown (the GPU's memory)."""
    v = _ver(version)
    out: Dict[str, Tuple[Optional[float], str]] = {}
    util = 0.92 if v >= (0, 20, 0) else 0.90
    out["gpu_memory_utilization"] = (util, f"vLLM {version or '?'} default")
    if engine == "V0" or (v != (0, 0, 0) and v < (0, 8, 0)):
        out["max_num_seqs"] = (256, "V0 engine default")
        if max_model_len:
            out["max_num_batched_tokens"] = (max(max_model_len, 2048), "V0 default max(max_model_len, 2048)")
        return out
    if device == "cpu":
        out["max_num_seqs"] = (128, "vLLM CPU default")
        out["max_num_batched_tokens"] = (2048, "vLLM CPU default")
        return out
    if gpu_memory_gib is None:
        out["max_num_seqs"] = (None, "vLLM default depends on the GPU's memory (unknown)")
        out["max_num_batched_tokens"] = (None, "vLLM default depends on the GPU's memory (unknown)")
        return out
    a100 = "A100" in gpu_name.upper()
    big = gpu_memory_gib >= 70 and not (a100 and v >= (0, 11, 0))
    if v >= (0, 33, 0) and gpu_memory_gib >= 160:
        seqs, mnbt = 1024, 16384
    elif big:
        seqs, mnbt = 1024, 8192
    else:
        seqs, mnbt = 256, 2048
    why = f"vLLM {version or '?'} default on {gpu_memory_gib:g} GiB GPUs"
    out["max_num_seqs"] = (seqs, why)
    out["max_num_batched_tokens"] = (mnbt, why)
    return out


# ---------------------------------------------------------------------------
# the node
# ---------------------------------------------------------------------------


def node_shape(
    facts: LogFacts,
    profile: Optional[Profile] = None,
    gpus: Optional[int] = None,
    gpu_memory_gib: Optional[float] = None,
    interconnect: Optional[str] = None,
    device: Optional[str] = None,
) -> NodeShape:
    """Work out the node: explicit options first, then what the log proves,
    then the profile, then assumptions (said as such)."""
    n = NodeShape()
    pname = f"profile {profile.name}" if profile is not None else ""
    # device
    log_dev = (facts.device or "").lower()
    if device:
        n.device, n.sources["device"] = device, "option --device"
    elif log_dev in ("cpu", "cuda") or facts.kv_cache_device in ("CPU", "GPU"):
        n.device = "cpu" if (log_dev == "cpu" or facts.kv_cache_device == "CPU") else "cuda"
        n.sources["device"] = "log"
    elif facts.platform_hint:
        n.device, n.sources["device"] = facts.platform_hint, "log (vLLM's platform modules in the log)"
    elif profile is not None:
        n.device, n.sources["device"] = profile.device, pname
    else:
        n.device, n.sources["device"] = "cuda", "assumed (no device in the log)"
    if n.device == "cpu":
        if facts.available_kv_cache_gib:
            n.cpu_kvcache_gib, n.sources["cpu_kvcache_gib"] = facts.available_kv_cache_gib, "log"
        elif profile is not None:
            n.cpu_kvcache_gib, n.sources["cpu_kvcache_gib"] = profile.cpu_kvcache_space_gib, pname
        return n
    # GPUs
    used = (facts.tensor_parallel_size or 1) * (facts.pipeline_parallel_size or 1) * (facts.data_parallel_size or 1)
    if gpus:
        n.gpus, n.sources["gpus"] = gpus, "option --gpus"
    elif profile is not None and profile.gpus_per_node:
        n.gpus, n.sources["gpus"] = profile.gpus_per_node, pname
    else:
        n.gpus = used
        n.sources["gpus"] = f"assumed: the GPUs the logged server used (TP x PP x DP = {used}); pass --gpus"
    if n.gpus < used:
        n.notes.append(f"the log's server used {used} GPUs but {n.sources['gpus']} says {n.gpus}")
    # memory
    if gpu_memory_gib:
        n.gpu_memory_gib, n.sources["gpu_memory_gib"] = gpu_memory_gib, "option --gpu-memory"
    elif profile is not None and profile.gpu_memory_gib:
        n.gpu_memory_gib, n.sources["gpu_memory_gib"] = float(profile.gpu_memory_gib), pname
        n.gpu_name = profile.gpu_name
    if n.gpu_memory_gib is None:
        est = estimate_gpu_memory(facts)
        if est is not None:
            n.gpu_memory_gib = est
            n.sources["gpu_memory_gib"] = (
                "assumed: estimated from the log (weights + KV cache per GPU / memory utilization, rounded up "
                "to a common GPU size); pass --gpu-memory or --profile")
    # interconnect: the PCIe warning is proof; an explicit option still wins
    if interconnect:
        n.interconnect, n.sources["interconnect"] = interconnect, "option --interconnect"
    elif facts.custom_allreduce_pcie_warning:
        n.interconnect, n.sources["interconnect"] = "pcie", "log (custom all-reduce disabled on PCIe-only GPUs)"
        if profile is not None and profile.interconnect not in ("pcie", "none"):
            n.notes.append(
                f"{pname} says the GPUs are linked by {profile.interconnect}, but vLLM found them PCIe-only; "
                "the log wins"
            )
    elif profile is not None and profile.interconnect != "none":
        n.interconnect, n.sources["interconnect"] = profile.interconnect, pname
    else:
        n.interconnect = None
        n.sources["interconnect"] = "unknown (no PCIe warning in the log; pass --interconnect)"
    return n


COMMON_GPU_GIB = (16, 24, 32, 40, 48, 64, 80, 94, 96, 128, 141, 180, 192, 288)


def estimate_gpu_memory(facts: LogFacts) -> Optional[float]:
    """A lower bound of one GPU's memory from what vLLM logged (weights and
    KV cache per GPU, divided by the memory utilization), rounded up to a
    common GPU size; ``None`` when the log lacks the numbers."""
    if not facts.model_load_gib or not facts.available_kv_cache_gib or facts.device == "cpu":
        return None
    util = facts.gpu_memory_utilization or vllm_defaults(facts.vllm_version, facts.engine_version, "cuda", None)[
        "gpu_memory_utilization"][0] or 0.9
    need = (facts.model_load_gib + facts.available_kv_cache_gib) / util
    for size in COMMON_GPU_GIB:
        if size >= need:
            return float(size)
    return float(math.ceil(need))


# ---------------------------------------------------------------------------
# what the log shows, as flags
# ---------------------------------------------------------------------------

_TUNED = (
    ("--tensor-parallel-size", "tensor_parallel_size"),
    ("--pipeline-parallel-size", "pipeline_parallel_size"),
    ("--data-parallel-size", "data_parallel_size"),
    ("--max-model-len", "max_model_len"),
    ("--gpu-memory-utilization", "gpu_memory_utilization"),
    ("--max-num-seqs", "max_num_seqs"),
    ("--max-num-batched-tokens", "max_num_batched_tokens"),
    ("--api-server-count", "api_server_count"),
    ("--kv-cache-dtype", "kv_cache_dtype"),
)
# args the recommendation never carries over: the plan decides them, or
# submit sets them itself, or they are secrets
_NOT_CARRIED = {
    "model",
    "model_tag",
    "host",
    "port",
    "served_model_name",
    "api_key",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "enforce_eager",
    "max_model_len",
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_num_batched_tokens",
    "api_server_count",
    "disable_log_requests",
    "disable_custom_all_reduce",
    "disable_log_stats",
    "kv_cache_dtype",
    "quantization",
    "dtype",
    "uvicorn_log_level",
}


def current_configuration(facts: LogFacts, node: NodeShape) -> Dict[str, Tuple[str, str]]:
    """flag -> (value, where it comes from) for the flags that matter."""
    src = "the log's non-default args" if facts.args_source == "non_default_args" else (
        "the log's args Namespace" if facts.args_source == "namespace" else "the log")
    defaults = vllm_defaults(
        facts.vllm_version, facts.engine_version, node.device, node.gpu_memory_gib, node.gpu_name, facts.max_model_len
    )
    out: Dict[str, Tuple[str, str]] = {}
    for flag, attr in _TUNED:
        val = getattr(facts, attr)
        key = attr
        if val is not None:
            where = src if key in facts.args else ("the engine config line" if key in (
                "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "kv_cache_dtype")
                or (key == "max_model_len" and "max_seq_len" in facts.engine_config) else "the log")
            if key == "max_num_batched_tokens" and key not in facts.args and facts.first_evidence("chunked_prefill"):
                where = "the log (chunked prefill line)"
            out[flag] = (_fmt(val), where)
        elif attr in defaults:
            dv, why = defaults[attr]
            out[flag] = ("default" + (f" ({_fmt(dv)})" if dv is not None else ""), why)
    out["--enforce-eager"] = ("on" if facts.enforce_eager else "off" if facts.enforce_eager is False else "?",
                              src if "enforce_eager" in facts.args else "the engine config line")
    if facts.enable_prefix_caching is not None:
        out["--enable-prefix-caching"] = ("on" if facts.enable_prefix_caching else "off", "the engine config line")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ---------------------------------------------------------------------------
# load seen in the stats lines
# ---------------------------------------------------------------------------


def load_summary(facts: LogFacts) -> LoadSummary:
    """Peak and busy-average figures over all engines, and the context the
    running requests used (KV tokens in use / running requests)."""
    engines = facts.stats
    if not engines:
        return LoadSummary(engines=0, stats_lines=facts.engine_stats_lines)
    series = list(engines.values())
    busy = sum(s.busy_count for s in series)
    peaks = [s for s in series if s.max_running is not None]
    kvs = [s.max_kv.stats.kv_cache_usage_pct for s in series
           if s.max_kv is not None and s.max_kv.stats.kv_cache_usage_pct is not None]
    kv_busy = sum(s.busy_kv_count for s in series)
    pc = sum(s.prefix_busy_count for s in series)

    def busy_mean(total: float, digits: int = 1) -> Optional[float]:
        return round(total / busy, digits) if busy else None

    # context per running request, from the busiest sample of each engine
    ctx: List[float] = []
    if facts.kv_cache_tokens:
        for s in series:
            for smp in ([s.max_running] if s.max_running else []) + list(s.sample):
                st = smp.stats
                if st.running > 0 and st.kv_cache_usage_pct is not None and st.kv_cache_usage_pct > 0:
                    ctx.append(st.kv_cache_usage_pct / 100.0 * facts.kv_cache_tokens / st.running)
    return LoadSummary(
        engines=len(engines),
        stats_lines=facts.engine_stats_lines,
        busy_lines=busy,
        peak_running_per_engine=max((s.max_running.stats.running for s in peaks if s.max_running), default=None),
        peak_waiting_per_engine=max((s.max_waiting.stats.waiting for s in peaks if s.max_waiting), default=0),
        peak_kv_cache_usage_pct=max(kvs) if kvs else None,
        preemptions=sum(s.preemptions_total for s in series) + facts.v0_preemption_warnings,
        lines_with_waiting=sum(s.waiting_lines for s in series),
        mean_busy_generation_tokens_per_s_per_engine=busy_mean(sum(s.busy_sum_gen for s in series)),
        mean_busy_prompt_tokens_per_s_per_engine=busy_mean(sum(s.busy_sum_prompt for s in series)),
        mean_busy_running_per_engine=busy_mean(sum(s.busy_sum_running for s in series)),
        mean_busy_kv_cache_usage_pct=round(sum(s.busy_sum_kv for s in series) / kv_busy, 2) if kv_busy else None,
        mean_busy_prefix_cache_hit_pct=round(sum(s.prefix_busy_sum for s in series) / pc, 1) if pc else None,
        context_tokens_per_request=int(round(max(ctx))) if ctx else None,
        context_tokens_per_request_median=int(round(sorted(ctx)[len(ctx) // 2])) if ctx else None,
    )
