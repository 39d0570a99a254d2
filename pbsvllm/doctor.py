"""Log facts + the planner's plan -> findings and a recommendation (pure).

``pbsvllm doctor`` reads a vLLM log with :mod:`pbsvllm.vllmlog`, works out
the node it ran on (:func:`node_shape`: the log, then ``--gpus`` /
``--interconnect`` / the profile, each value saying where it came from),
asks the same planner ``submit`` uses for the flags it would run
(:func:`plan_request` builds the inputs, the command calls
``pbsvllm.render.plan_for``), and :func:`diagnose` turns all that into
findings, each with an id, a severity, the evidence (log lines with their
numbers), what it costs and what to change, plus the recommendation: the
plan as a diff against what the log shows, predicted KV capacity before and
after, and the exact ``pbsvllm submit`` command.

Nothing here reads files or runs commands; the rules are written out in
docs/doctor.md.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pbsvllm.vllmlog import LogFacts

SEVERITIES = ("critical", "high", "medium", "low", "info")

# thresholds (the reasoning is in docs/doctor.md)
KV_IDLE_PCT = 25.0  # peak KV usage under this while busy: the cache is mostly idle
KV_FULL_PCT = 90.0  # peak KV usage over this with waiting/preempted requests: memory-bound
CAP_BINDS = 0.9  # running >= 90% of max-num-seqs: the limit is what stops the batch
PREFIX_LOW_PCT = 5.0  # mean busy prefix-cache hit rate under this: little sharing
MIN_BUSY_LINES = 3  # judge load only from at least this many busy stats lines
MAX_LEN_SLACK = 8  # max-model-len > 8x the context requests use: far beyond


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


@dataclass
class Finding:
    id: str
    severity: str
    title: str
    evidence: List[Tuple[int, str]]
    cost: str
    recommendation: str
    assumptions: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "evidence": [{"line": n, "text": t} for n, t in self.evidence],
            "cost": self.cost,
            "recommendation": self.recommendation,
        }
        if self.assumptions:
            d["assumptions"] = list(self.assumptions)
        return d


@dataclass
class NodeShape:
    """The node the server ran on, each value with where it came from."""

    device: str = "cuda"
    gpus: Optional[int] = None
    gpu_memory_gib: Optional[float] = None
    interconnect: Optional[str] = None
    gpu_name: str = ""
    cpu_kvcache_gib: Optional[float] = None
    sources: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def assumed(self, key: str) -> bool:
        return self.sources.get(key, "").startswith("assumed")

    def describe(self) -> str:
        if self.device == "cpu":
            kv = f"{self.cpu_kvcache_gib:g} GiB KV cache" if self.cpu_kvcache_gib else "KV cache size unknown"
            return f"CPU ({kv})"
        gpus = f"{self.gpus}x" if self.gpus else "?x"
        mem = f" {self.gpu_memory_gib:g} GiB" if self.gpu_memory_gib else " (memory unknown)"
        name = f" {self.gpu_name}" if self.gpu_name else " GPU"
        return f"{gpus}{name}{mem}, {self.interconnect or 'interconnect unknown'}"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "device": self.device,
            "gpus": self.gpus,
            "gpu_memory_gib": self.gpu_memory_gib,
            "interconnect": self.interconnect,
            "gpu_name": self.gpu_name,
            "cpu_kvcache_gib": self.cpu_kvcache_gib,
            "sources": dict(self.sources),
            "notes": list(self.notes),
        }


@dataclass
class FlagChange:
    flag: str
    current: str  # "" = not set
    recommended: str  # "" = remove / not set
    reason: str
    current_is_default: bool = False

    @property
    def action(self) -> str:
        if self.current and not self.recommended:
            return "remove"
        if not self.current or self.current_is_default:
            return "add"
        return "change"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "flag": self.flag,
            "action": self.action,
            "current": self.current or None,
            "current_is_default": self.current_is_default,
            "recommended": self.recommended or None,
            "reason": self.reason,
        }


@dataclass
class Capacity:
    replicas: int
    kv_cache_tokens_per_replica: Optional[int]
    max_model_len: Optional[int]
    max_concurrency_at_max_len: Optional[float]  # whole server
    requests_at_observed_size: Optional[float]  # whole server, at the context the log's requests used
    max_num_seqs_total: Optional[int]
    source: str

    def to_dict(self) -> Dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Recommendation:
    available: bool
    why_unavailable: str = ""
    plan: Optional[Dict[str, Any]] = None  # Plan.to_json()
    changes: List[FlagChange] = field(default_factory=list)
    before: Optional[Capacity] = None
    after: Optional[Capacity] = None
    submit_argv: List[str] = field(default_factory=list)
    vllm_args: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def submit_command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.submit_argv)

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"available": self.available}
        if not self.available:
            d["why_unavailable"] = self.why_unavailable
            return d
        d["submit_command"] = self.submit_command
        d["vllm_args"] = list(self.vllm_args)
        d["changes"] = [c.to_dict() for c in self.changes]
        d["capacity_before"] = self.before.to_dict() if self.before else None
        d["capacity_after"] = self.after.to_dict() if self.after else None
        if self.notes:
            d["notes"] = list(self.notes)
        if self.plan is not None:
            d["plan"] = self.plan
        return d


@dataclass
class Diagnosis:
    log_path: str
    facts: LogFacts
    node: NodeShape
    findings: List[Finding]
    recommendation: Recommendation
    strengths: List[str]
    load: Dict[str, Any]
    current: Dict[str, Tuple[str, str]]  # flag -> (value, where from)

    def to_json(self) -> Dict[str, Any]:
        return {
            "log": self.log_path,
            "facts": self.facts.to_json_facts(),
            "findings": [f.to_dict() for f in self.findings],
            "recommendation": self.recommendation.to_dict(),
            "node": self.node.to_dict(),
            "load": self.load,
            "current_configuration": {k: {"value": v, "source": s} for k, (v, s) in self.current.items()},
            "strengths": list(self.strengths),
            "lines_read": self.facts.lines,
        }


# ---------------------------------------------------------------------------
# vLLM defaults (reference vllm.md §6)
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
    profile: Any = None,
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


def load_summary(facts: LogFacts) -> Dict[str, Any]:
    """Peak and busy-average figures over all engines, and the context the
    running requests used (KV tokens in use / running requests)."""
    engines = facts.stats
    out: Dict[str, Any] = {"engines": len(engines), "stats_lines": facts.engine_stats_lines}
    if not engines:
        return out
    busy = sum(s.busy_count for s in engines.values())
    out["busy_lines"] = busy
    peaks = [s for s in engines.values() if s.max_running is not None]
    out["peak_running_per_engine"] = max((s.max_running.stats.running for s in peaks), default=None)  # type: ignore[union-attr]
    out["peak_waiting_per_engine"] = max((s.max_waiting.stats.waiting for s in peaks if s.max_waiting), default=0)
    kvs = [s.max_kv.stats.kv_cache_usage_pct for s in engines.values() if s.max_kv is not None]
    out["peak_kv_cache_usage_pct"] = max(kvs) if kvs else None
    out["preemptions"] = sum(s.preemptions_total for s in engines.values()) + facts.v0_preemption_warnings
    out["lines_with_waiting"] = sum(s.waiting_lines for s in engines.values())
    tot_gen = sum(s.busy_sum_gen for s in engines.values())
    out["mean_busy_generation_tokens_per_s_per_engine"] = round(tot_gen / busy, 1) if busy else None
    tot_prompt = sum(s.busy_sum_prompt for s in engines.values())
    out["mean_busy_prompt_tokens_per_s_per_engine"] = round(tot_prompt / busy, 1) if busy else None
    tot_run = sum(s.busy_sum_running for s in engines.values())
    out["mean_busy_running_per_engine"] = round(tot_run / busy, 1) if busy else None
    kv_busy = sum(s.busy_kv_count for s in engines.values())
    out["mean_busy_kv_cache_usage_pct"] = round(sum(s.busy_sum_kv for s in engines.values()) / kv_busy, 2) if kv_busy else None
    pc = sum(s.prefix_busy_count for s in engines.values())
    out["mean_busy_prefix_cache_hit_pct"] = round(sum(s.prefix_busy_sum for s in engines.values()) / pc, 1) if pc else None
    # context per running request, from the busiest sample of each engine
    ctx: List[float] = []
    if facts.kv_cache_tokens:
        for s in engines.values():
            for smp in ([s.max_running] if s.max_running else []) + list(s.sample):
                st = smp.stats
                if st.running > 0 and st.kv_cache_usage_pct is not None and st.kv_cache_usage_pct > 0:
                    ctx.append(st.kv_cache_usage_pct / 100.0 * facts.kv_cache_tokens / st.running)
    if ctx:
        out["context_tokens_per_request"] = int(round(max(ctx)))
        out["context_tokens_per_request_median"] = int(round(sorted(ctx)[len(ctx) // 2]))
    return out


# ---------------------------------------------------------------------------
# recommendation inputs (the same ones `pbsvllm submit` would get)
# ---------------------------------------------------------------------------


@dataclass
class PlanRequest:
    model: str
    resolve_flags: Dict[str, Any]  # for pbsvllm.config.resolve
    options: Dict[str, Any]  # for pbsvllm.render.plan_for
    submit_argv: List[str]
    notes: List[str]


def plan_request(
    facts: LogFacts,
    node: NodeShape,
    *,
    model: Optional[str] = None,
    alias: Optional[str] = None,
    profile_name: Optional[str] = None,
    vllm_version: Optional[str] = None,
    extra_options: Optional[Dict[str, Any]] = None,
    profile_device: Optional[str] = None,
) -> PlanRequest:
    """What to hand the planner so that it plans exactly what
    ``pbsvllm submit`` would with the printed command line."""
    notes: List[str] = []
    mdl = model or facts.model or ""
    version = vllm_version or facts.vllm_version
    served = facts.served_model_name
    al = alias or served or (mdl.rstrip("/").rsplit("/", 1)[-1] if mdl else "server")
    flags: Dict[str, Any] = {}
    argv = ["pbsvllm", "submit", mdl, "--alias", al]
    if profile_name:
        flags["profile"] = profile_name
        argv += ["--profile", profile_name]
    src = node.sources
    if node.device and src.get("device", "").startswith(("log", "option")) and node.device != profile_device:
        flags["device"] = node.device
        argv += ["--device", node.device]
    if node.device != "cpu":
        if node.gpus and not src.get("gpus", "").startswith("profile"):
            flags["gpus_per_node"] = node.gpus
            argv += ["--gpus", str(node.gpus)]
        if node.gpu_memory_gib and not src.get("gpu_memory_gib", "").startswith("profile"):
            flags["gpu_memory_gib"] = node.gpu_memory_gib
            argv += ["--gpu-memory", _fmt(node.gpu_memory_gib)]
        if node.interconnect and not src.get("interconnect", "").startswith("profile"):
            flags["interconnect"] = node.interconnect
            argv += ["--interconnect", node.interconnect]
    options: Dict[str, Any] = {"served_model_name": served or al, "port": 8000}
    if served and served != al:
        argv += ["--served-model-name", served]
    if version:
        options["vllm_version"] = version
        argv += ["--vllm-version", version]
    if "max_model_len" in facts.args and facts.max_model_len:
        options["max_model_len"] = facts.max_model_len
        argv += ["--max-model-len", str(facts.max_model_len)]
        notes.append(f"--max-model-len {facts.max_model_len} kept: you set it")
    q = facts.args.get("quantization")
    if isinstance(q, str) and q not in ("None", ""):
        options["quantization"] = q
        argv += ["--quantization", q]
    kvd = facts.args.get("kv_cache_dtype")
    if isinstance(kvd, str) and kvd not in ("auto", "None", ""):
        options["kv_cache_dtype"] = kvd
        argv += ["--kv-cache-dtype", kvd]
    # the workload the log shows, when demand went unmet (requests waited or were preempted): the plan must
    # hold it, so the planner gets the concurrency seen and the size requests had
    load = load_summary(facts)
    if (load.get("peak_waiting_per_engine") or 0) > 0 or (load.get("preemptions") or 0) > 0:
        demand = sum((s.max_running.stats.running if s.max_running else 0) +
                     (s.max_waiting.stats.waiting if s.max_waiting else 0) for s in facts.stats.values())
        if demand > 0:
            options["concurrency"] = demand
            argv += ["--concurrency", str(demand)]
            ctx = load.get("context_tokens_per_request")
            if ctx:
                options["prompt_len"] = ctx
                argv += ["--prompt-len", str(ctx)]
            notes.append(f"requests waited or were preempted, so the plan is sized for the demand the log shows: "
                         f"{demand} concurrent requests (running + waiting at the peak)"
                         + (f" of ~{ctx:,} tokens of context each" if ctx else ""))
    carried = carried_args(facts, version)
    if carried:
        options["vllm_args"] = [" ".join(shlex.quote(t) for t in grp) for grp in carried]
        for grp in carried:
            argv += ["--vllm-arg", " ".join(shlex.quote(t) for t in grp)]
        notes.append("flags of yours the plan does not decide are carried over: "
                     + ", ".join(g[0] for g in carried))
    for k, v in (extra_options or {}).items():
        if v is not None:
            options[k] = v
    return PlanRequest(mdl, flags, options, argv, notes)


def carried_args(facts: LogFacts, version: Optional[str]) -> List[List[str]]:
    """The user's own flags (from 'non-default args') that the plan does not
    decide, as vLLM argv groups the flag table knows for ``version``."""
    if facts.args_source != "non_default_args" or not version:
        return []
    from pbsvllm.flags import is_known, lookup

    out: List[List[str]] = []
    for key, val in facts.args.items():
        if key in _NOT_CARRIED:
            continue
        flag = "--" + key.replace("_", "-")
        f = lookup(flag)
        if f is None or not is_known(flag, version) or f.name == "--api-key":
            continue
        if f.takes_value:
            if isinstance(val, (str, int, float)) and not isinstance(val, bool):
                out.append([f.name, str(val)])
            elif isinstance(val, dict):
                import json

                out.append([f.name, json.dumps(val)])
        elif val is True:
            out.append([f.name])
    return out


# ---------------------------------------------------------------------------
# the recommendation
# ---------------------------------------------------------------------------


def recommendation_from_plan(
    facts: LogFacts, plan: Any, req: PlanRequest, current: Dict[str, Tuple[str, str]], load: Dict[str, Any]
) -> Recommendation:
    """The plan as a diff against the log, with capacity before and after."""
    rec = Recommendation(available=True, plan=plan.to_json(), submit_argv=list(req.submit_argv),
                         vllm_args=list(plan.vllm_args), notes=list(req.notes))
    planned = {a.flag: a for a in plan.args}
    skip = {"--served-model-name", "--host", "--port"}
    seen = set()
    for flag, (val, where) in current.items():
        seen.add(flag)
        if flag in skip:
            continue
        is_default = val.startswith("default")
        cur_val = val[len("default ("):-1] if is_default and val.endswith(")") else ("" if is_default else val)
        if flag == "--enforce-eager":
            if val == "on":
                rec.changes.append(FlagChange(flag, "on", "", "the planner never sets it: CUDA graphs and "
                                              "torch.compile are what make decode fast"))
            continue
        if flag == "--enable-prefix-caching":
            continue
        a = planned.get(flag)
        if a is None:
            continue
        new = " ".join(a.values)
        if _same(cur_val, new):
            continue
        rec.changes.append(FlagChange(flag, cur_val, new, a.reason, current_is_default=is_default))
    for a in plan.args:
        if a.flag in seen or a.flag in skip or a.source == "user":
            continue
        new = " ".join(a.values) or "(on)"
        had = facts.args.get(a.flag[2:].replace("-", "_"))
        if had is not None and had is not False:
            cur = "(on)" if had is True else _fmt(had)
            if _same(cur, new):
                continue
            rec.changes.append(FlagChange(a.flag, cur, new, a.reason))
            continue
        rec.changes.append(FlagChange(a.flag, "", new, a.reason))
    if plan.data_parallel_mode == "replicas":
        rec.notes.append("data parallel as separate servers (replicas mode): " +
                         plan.decisions.get("data_parallel_size", ""))
    # deprecated flags the log shows that the plan drops
    for d in deprecated_in_log(facts):
        if d["flag"] not in planned:
            rec.changes.append(FlagChange(d["flag"], "on" if d.get("value") in (True, None) else str(d["value"]), "",
                                          f"{d['status']} since vLLM {d['since']}: {d['replacement'] or 'drop it'}"))
    dp_before = facts.data_parallel_size or 1
    ctx = load.get("context_tokens_per_request")
    rec.before = Capacity(
        replicas=dp_before,
        kv_cache_tokens_per_replica=facts.kv_cache_tokens,
        max_model_len=facts.max_model_len,
        max_concurrency_at_max_len=(facts.max_concurrency * dp_before) if facts.max_concurrency else None,
        requests_at_observed_size=(facts.kv_cache_tokens * dp_before / ctx) if (facts.kv_cache_tokens and ctx) else None,
        max_num_seqs_total=(_int_or_none(current.get("--max-num-seqs", ("", ""))[0]) or 0) * dp_before or None,
        source="the log",
    )
    rec.after = Capacity(
        replicas=plan.data_parallel_size,
        kv_cache_tokens_per_replica=plan.kv_cache_tokens,
        max_model_len=plan.max_model_len,
        max_concurrency_at_max_len=plan.max_concurrency,
        requests_at_observed_size=(plan.kv_cache_tokens * plan.data_parallel_size / ctx) if ctx else None,
        max_num_seqs_total=plan.max_num_seqs * plan.data_parallel_size,
        source="the planner's prediction",
    )
    for w in plan.warnings:
        rec.notes.append("planner: " + w)
    return rec


def _int_or_none(s: str) -> Optional[int]:
    s = s.strip()
    if s.startswith("default (") and s.endswith(")"):
        s = s[9:-1]
    try:
        return int(float(s))
    except ValueError:
        return None


def _same(a: str, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except ValueError:
        return a == b


def deprecated_in_log(facts: LogFacts) -> List[Dict[str, Any]]:
    """Deprecated or removed flags among the user's flags, for the log's version."""
    if not facts.vllm_version or not facts.args:
        return []
    from pbsvllm.flags import deprecations

    names = []
    values: Dict[str, Any] = {}
    for key, val in facts.args.items():
        if facts.args_source == "namespace" and val in (None, False, "", [], {}):
            continue  # a Namespace lists every option; only set ones matter
        name = "--" + key.replace("_", "-")
        names.append(name)
        values[name] = val
    out = []
    for d in deprecations(names, facts.vllm_version):
        d = dict(d)
        d["value"] = values.get(d["flag"])
        out.append(d)
    return out


# ---------------------------------------------------------------------------
# findings
# ---------------------------------------------------------------------------

_ERROR_FIXES: Dict[str, Tuple[str, str, str]] = {
    # kind: (title, cost, fix)
    "cuda_oom": (
        "CUDA out of memory",
        "the engine died (at start-up or mid-run); every in-flight request failed",
        "lower --max-num-batched-tokens and --max-num-seqs (activation peaks) or --gpu-memory-utilization; "
        "check no other process holds GPU memory (`pbsvllm cleanup`, nvidia-smi); a larger TP splits the weights",
    ),
    "no_cache_memory": (
        "no GPU memory left for the KV cache",
        "the server cannot start",
        "the weights and activations take all of --gpu-memory-utilization x GPU memory: raise "
        "--gpu-memory-utilization, use a larger TP (or more GPUs), a quantized model, or a smaller "
        "--max-num-batched-tokens",
    ),
    "kv_cache_too_small": (
        "the KV cache cannot hold one sequence of the max model length",
        "the server cannot start",
        "lower --max-model-len (vLLM's own estimate of what fits is quoted below when it gave one), or give "
        "the KV cache more memory: --gpu-memory-utilization, larger TP, --kv-cache-dtype fp8",
    ),
    "free_memory_low": (
        "GPU memory already in use when vLLM started",
        "the server cannot start",
        "another process holds GPU memory (often a stale server of yours: `pbsvllm cleanup`); or lower "
        "--gpu-memory-utilization to what is free",
    ),
    "port_in_use": (
        "the port is already in use",
        "the server cannot start (or, with SO_REUSEPORT, shares the port with another server)",
        "stop the other server (`pbsvllm cleanup`) or use another port; pbsvllm's job script picks a free "
        "port at start time",
    ),
    "nccl": (
        "NCCL (inter-GPU communication) failed",
        "the engine died or never started",
        "check CUDA_VISIBLE_DEVICES matches the GPUs PBS gave the job, that no stale process holds the GPUs "
        "(`pbsvllm cleanup`), and rerun with NCCL_DEBUG=INFO; a smaller TP needs less or no NCCL traffic",
    ),
    "engine_init_failed": (
        "engine core initialization failed",
        "the server cannot start",
        "the root cause is logged above this line (the other findings quote it when it is a known one)",
    ),
    "cpu_attention_unsupported": (
        "the CPU attention backend does not support this model's head size",
        "the engine dies on the first request, although /v1/models answered 200",
        "vLLM's CPU backend supports head_dim 32, 64, 80, 96, 112, 128, 160, 192, 224, 256 and 512; serve a "
        "model with a supported head size, or run on GPUs",
    ),
    "engine_crashed": (
        "the engine crashed (EngineDeadError before any shutdown)",
        "in-flight requests got HTTP 500 and the server stopped",
        "read the traceback above the first quoted line; it names the failing operation",
    ),
}


def _ev(facts: LogFacts, *keys: str, limit: int = 4) -> List[Tuple[int, str]]:
    out: List[Tuple[int, str]] = []
    for k in keys:
        for item in facts.evidence.get(k, []):
            if item not in out:
                out.append(item)
    return sorted(out)[:limit]


def _sorted(ev: List[Tuple[int, str]], limit: int = 5) -> List[Tuple[int, str]]:
    return sorted(set(ev))[:limit]


def _stats_ev(facts: LogFacts, which: str) -> List[Tuple[int, str]]:
    """The stats lines with the peak of ``which`` (running/kv/waiting) per engine."""
    out = []
    for key in sorted(facts.stats):
        s = facts.stats[key]
        smp = getattr(s, "max_" + which)
        if smp is not None:
            out.append((smp.line_no, _strip(smp.stats.raw)))
    return out[:4]


def _strip(raw: str) -> str:
    from pbsvllm.vllmlog import strip_line

    return strip_line(raw)


def diagnose(
    facts: LogFacts,
    node: NodeShape,
    *,
    plan: Any = None,
    plan_req: Optional[PlanRequest] = None,
    plan_error: str = "",
    log_path: str = "",
) -> Diagnosis:
    """All findings, most severe first, and the recommendation."""
    current = current_configuration(facts, node)
    load = load_summary(facts)
    findings: List[Finding] = []
    add = findings.append
    gpu = node.device != "cpu"
    tp = facts.tensor_parallel_size or 1
    dp = facts.data_parallel_size or 1

    # ---- errors -------------------------------------------------------------
    seen_kinds = []
    for ev in facts.errors.events:
        if ev.kind in seen_kinds:
            continue
        seen_kinds.append(ev.kind)
    if facts.errors.crashed and "engine_crashed" not in seen_kinds:
        seen_kinds.append("engine_crashed")
    for kind in seen_kinds:
        if kind == "engine_crashed" and any(k not in ("engine_crashed", "engine_init_failed") for k in seen_kinds):
            continue  # the specific cause says it
        if kind == "engine_init_failed" and any(k not in ("engine_crashed", "engine_init_failed") for k in seen_kinds):
            continue
        title, cost, fix = _ERROR_FIXES.get(kind, (kind, "the server failed", "see the quoted lines"))
        evidence = [(e.line_no, e.text) for e in facts.errors.events if e.kind == kind][:3]
        if kind == "engine_crashed" and facts.errors.crash_line and not evidence:
            evidence = _ev(facts, "engine_dead")
        if kind == "kv_cache_too_small" and facts.errors.suggested_max_model_len:
            fix = (f"restart with --max-model-len {facts.errors.suggested_max_model_len} (vLLM's own estimate of "
                   f"what the KV cache holds), or give the KV cache more memory (--gpu-memory-utilization, larger "
                   f"TP, --kv-cache-dtype fp8)")
        add(Finding("error_" + kind, "critical", title, evidence, cost, fix))

    # ---- parallelism -----------------------------------------------------------
    planned_tp = getattr(plan, "tensor_parallel_size", None) if plan is not None else None
    if tp > 1 and planned_tp is not None and planned_tp < tp:
        planned_dp = plan.data_parallel_size
        per_gpu = f"{facts.model_load_gib:.2f} GiB of weights per GPU" if facts.model_load_gib else ""
        ev = _ev(facts, "config", "args") + _ev(facts, "model_load", "allreduce", limit=2)
        assumptions = []
        for key in ("gpus", "gpu_memory_gib", "interconnect"):
            if node.assumed(key) or node.sources.get(key, "").startswith("unknown"):
                assumptions.append(f"{key}: {node.sources[key]}")
        add(Finding(
            "tp_oversized",
            "critical" if node.interconnect == "pcie" or tp >= 4 else "high",
            f"tensor parallel {tp} for a model that fits {planned_tp} GPU" + ("s" if planned_tp > 1 else ""),
            _sorted(ev),
            (f"every layer of every token waits for an all-reduce across {tp} GPUs"
             + (" over PCIe" if node.interconnect == "pcie" else "")
             + (f" ({per_gpu})" if per_gpu else "")
             + f"; the same {tp * (facts.pipeline_parallel_size or 1) * dp} GPUs as {planned_dp} independent "
             f"replicas (TP={planned_tp}, DP={planned_dp}) serve {planned_dp}x the batch with no inter-GPU traffic"),
            (f"--tensor-parallel-size {planned_tp} --data-parallel-size {planned_dp}"
             if plan.data_parallel_mode != "replicas" else
             f"--tensor-parallel-size {planned_tp} with {planned_dp} replicas (separate servers: this vLLM has no "
             f"--data-parallel-size; pbsvllm's replicas mode starts them)")
            + f" (the planner: {plan.decisions.get('tensor_parallel_size', '')})",
            assumptions,
        ))
    if tp > 2 and facts.custom_allreduce_pcie_warning:
        add(Finding(
            "tp_over_pcie",
            "high",
            f"TP={tp} over PCIe-only GPUs: custom all-reduce disabled",
            _ev(facts, "allreduce", limit=4),
            "vLLM's fast custom all-reduce only works on NVLink (or two PCIe GPUs); NCCL over PCIe adds latency "
            "to every layer's all-reduce, on every decoded token",
            (f"use TP={planned_tp} with data parallelism" if planned_tp is not None and planned_tp < tp else
             "use TP <= 2 on PCIe nodes, or a node whose GPUs are linked by NVLink")
            + "; if TP > 2 on PCIe is really needed, add --disable-custom-all-reduce to say so explicitly",
        ))
    elif tp > 1 and facts.custom_allreduce_disabled_reason in ("no_p2p", "world_size"):
        add(Finding(
            "custom_allreduce_disabled",
            "medium",
            "custom all-reduce disabled (" + ("no GPU P2P" if facts.custom_allreduce_disabled_reason == "no_p2p"
                                              else "unsupported world size") + ")",
            _ev(facts, "allreduce"),
            "all-reduces go through NCCL instead of vLLM's faster kernel",
            "check the GPUs' P2P capability (nvidia-smi topo -m); prefer a TP size of 2, 4 or 8 on P2P-linked GPUs",
        ))

    # ---- eager -------------------------------------------------------------------
    if facts.enforce_eager or facts.cudagraph_disabled:
        ev = _ev(facts, "eager", "args", "config", limit=3)
        if node.assumed("device"):
            add(Finding(
                "eager_mode", "medium", "--enforce-eager (CUDA graphs / torch.compile off)", ev,
                "on GPUs every decode step launches each kernel from Python instead of replaying a captured CUDA "
                "graph; on vLLM's CPU backend it turns torch.compile off",
                "remove --enforce-eager (the planner never sets it)",
                [node.sources["device"]],
            ))
        elif gpu:
            add(Finding(
                "eager_mode", "high", "CUDA graphs off (--enforce-eager)", ev,
                "every decode step launches each of its kernels from Python instead of replaying one captured CUDA "
                "graph; for a small model or a small batch the launch overhead is a large share of each step, so "
                "decode tokens/s drop most exactly where this server runs",
                "remove --enforce-eager (CUDA graphs are captured once at start-up; the planner never sets it)",
            ))
        else:
            add(Finding(
                "eager_mode", "low", "torch.compile off (--enforce-eager) on the CPU backend", ev,
                "the model runs uncompiled; start-up is faster (no compile) but each step does more Python work",
                "remove --enforce-eager unless start-up time matters more than throughput",
            ))

    # ---- load ----------------------------------------------------------------------
    busy = load.get("busy_lines", 0) or 0
    peak_kv = load.get("peak_kv_cache_usage_pct")
    peak_run = load.get("peak_running_per_engine") or 0
    peak_wait = load.get("peak_waiting_per_engine") or 0
    preempt = load.get("preemptions") or 0
    seqs_val = current.get("--max-num-seqs", ("", ""))
    seqs = _int_or_none(seqs_val[0])
    if busy >= MIN_BUSY_LINES and peak_kv is not None and peak_kv < KV_IDLE_PCT and peak_run > 0:
        could = peak_run / (peak_kv / 100.0) if peak_kv > 0 else None
        could_txt = (f"at the size these requests had, the KV cache could hold ~{could:,.0f} of them per engine"
                     if could else "the KV cache stayed empty")
        capped = seqs is not None and peak_run >= CAP_BINDS * seqs
        if capped or peak_wait > 0:
            why = (f"running requests reached the --max-num-seqs limit ({seqs})" if capped else
                   f"up to {peak_wait} requests waited while the KV cache was {peak_kv:g}% used")
            change = (f"raise --max-num-seqs (the plan: {plan.max_num_seqs} per replica)" if plan is not None else
                      "raise --max-num-seqs") + " and --max-num-batched-tokens so the batch can fill the cache"
            sev = "high"
        else:
            why = (f"at most {peak_run} requests ran at once per engine (limit {seqs if seqs is not None else '?'}): "
                   "the clients sent no more")
            change = ("send more concurrent requests (the client's concurrency is the limit: e.g. a higher "
                      "-n/--max-concurrent in the evaluation harness)"
                      + (f"; keep --max-num-seqs at least {plan.max_num_seqs} per replica (the plan) so the server "
                         "admits them" if plan is not None else ""))
            sev = "high" if (could or 0) >= 4 * peak_run else "medium"
        add(Finding(
            "kv_cache_idle",
            sev,
            f"KV cache at most {peak_kv:g}% used: {why}",
            _sorted(_stats_ev(facts, "running") + _ev(facts, "kv_size", "max_concurrency", limit=2)),
            f"{100 - peak_kv:.0f}% of the KV memory never held a request; {could_txt}, so throughput is a "
            "fraction of what the GPUs can do (decode is memory-bound: a step for many requests costs little more "
            "than a step for a few)",
            change,
        ))
    elif (busy >= MIN_BUSY_LINES and seqs is not None and peak_run >= CAP_BINDS * seqs and peak_wait > 0
          and peak_kv is not None and peak_kv < KV_FULL_PCT):
        add(Finding(
            "max_num_seqs_binds",
            "high",
            f"--max-num-seqs {seqs} stops the batch while the KV cache has room ({peak_kv:g}% used at most)",
            _sorted(_stats_ev(facts, "waiting") + _stats_ev(facts, "running")[:1] + _ev(facts, "args", limit=1)),
            f"up to {peak_wait} requests waited although {100 - peak_kv:.0f}% of the KV cache was free: they queue "
            "for a batch slot, not for memory",
            (f"raise --max-num-seqs (the plan: {plan.max_num_seqs} per replica)" if plan is not None else
             f"raise --max-num-seqs (e.g. to {min(1024, 2 ** math.ceil(math.log2(max(2, seqs * 2))))})"),
        ))
    if peak_kv is not None and peak_kv >= KV_FULL_PCT and (peak_wait > 0 or preempt > 0):
        more = (f"; the plan uses {plan.data_parallel_size} replica(s) of TP={plan.tensor_parallel_size}"
                if plan is not None else "")
        add(Finding(
            "kv_cache_full",
            "high",
            f"KV cache full ({peak_kv:g}%) with requests waiting" + (f" and {preempt} preemptions" if preempt else ""),
            _sorted(_stats_ev(facts, "kv") + _stats_ev(facts, "waiting")[:1] + _ev(facts, "preemption", limit=1)),
            "requests queue (time to first token grows) and preempted ones are recomputed from scratch",
            "more KV memory or more replicas: free GPUs -> more data-parallel replicas; --gpu-memory-utilization "
            "up to 0.95; --kv-cache-dtype fp8 (twice the tokens); a shorter --max-model-len" + more,
        ))
    mnbt = _int_or_none(current.get("--max-num-batched-tokens", ("", ""))[0])
    if gpu and mnbt is not None and plan is not None and mnbt < plan.max_num_batched_tokens:
        ctx = load.get("context_tokens_per_request")
        detail = (f"; the requests seen used ~{ctx:,} tokens of context each, i.e. up to {math.ceil(ctx / mnbt)} "
                  f"prefill steps per prompt" if ctx and ctx > mnbt else "")
        sev = "medium" if (ctx and ctx > mnbt) or peak_wait > 0 else "low"
        add(Finding(
            "batched_tokens_small",
            sev,
            f"--max-num-batched-tokens {mnbt}: small prefill chunks",
            _ev(facts, "chunked_prefill", "args", limit=2),
            f"at most {mnbt} prompt tokens are processed per step, so long prompts take several steps to their "
            f"first token{detail}",
            f"--max-num-batched-tokens {plan.max_num_batched_tokens} (the plan: "
            f"{plan.arg('--max-num-batched-tokens').reason if plan.arg('--max-num-batched-tokens') else ''})",
        ))
    pref = load.get("mean_busy_prefix_cache_hit_pct")
    if facts.enable_prefix_caching is False and facts.engine_version == "V1":
        add(Finding(
            "prefix_caching_off", "low", "prefix caching disabled", _ev(facts, "config", "args", limit=2),
            "prompts that share a prefix (system prompt, few-shot examples) are recomputed every time",
            "drop --no-enable-prefix-caching unless outputs must not depend on cache state",
        ))
    elif pref is not None and busy >= MIN_BUSY_LINES and pref < PREFIX_LOW_PCT:
        add(Finding(
            "prefix_cache_low", "low", f"prefix-cache hit rate {pref:g}% while busy",
            _stats_ev(facts, "running")[:2],
            "no prompt reused a cached prefix: if your prompts share a system prompt or few-shot examples, "
            "their prefill is recomputed for every request",
            "if prompts share a prefix, put the shared part first and keep it byte-identical (no timestamps or "
            "request ids before it); if they do not, nothing to do",
        ))
    ctx = load.get("context_tokens_per_request")
    if facts.max_model_len and ctx and facts.max_model_len > MAX_LEN_SLACK * ctx and facts.max_model_len > 8192:
        sug = (plan.max_model_len if plan is not None and plan.max_model_len < facts.max_model_len else
               max(2048, 1 << math.ceil(math.log2(ctx * 2))))
        add(Finding(
            "max_model_len_oversized", "low",
            f"--max-model-len {facts.max_model_len:,} while requests used ~{ctx:,} tokens",
            _ev(facts, "max_model_len", "max_concurrency", limit=2),
            "vLLM must keep room for one sequence that long, and a few very long requests can take the whole "
            "KV cache from the others; the 'maximum concurrency' vLLM prints is computed at this length",
            f"--max-model-len {sug:,} if no request needs more (the plan's value; pbsvllm submit --max-model-len "
            "to choose)",
            [f"the context per request is estimated from KV usage / running requests; the longest request in "
             f"the log may be longer"],
        ))
    # ---- flags ----------------------------------------------------------------------
    for d in deprecated_in_log(facts):
        add(Finding(
            "deprecated_flag" if d["status"] == "deprecated" else "removed_flag",
            "low" if d["status"] == "deprecated" else "medium",
            f"{d['flag']} is {d['status']} (since vLLM {d['since']})",
            _ev(facts, "args", limit=1),
            "it still works in this version but will stop working" if d["status"] == "deprecated" else
            "it does not exist in this version",
            d["replacement"] and f"use {d['replacement']}" or "drop it",
        ))
    # ---- observability ---------------------------------------------------------------
    if facts.stats_logging_disabled:
        add(Finding(
            "stats_logging_disabled", "low", "more than one API server: vLLM logs no engine stats",
            _ev(facts, "stats_disabled", limit=1),
            "no throughput, queue or KV-cache figures in the log: neither you nor `pbsvllm status/doctor` can see "
            "the load",
            "--api-server-count 1 (vLLM 0.32+ defaults to one API server per data-parallel rank)",
        ))
    elif facts.engine_stats_lines == 0 and not facts.error and "ready" in facts.phases:
        add(Finding(
            "no_stats", "info", "no engine-stats lines",
            _ev(facts, "ready", limit=1),
            "the load cannot be judged from this log (stats are off with --disable-log-stats, and idle intervals "
            "are logged at DEBUG)",
            "keep stats logging on, and read the log after the server has had traffic",
        ))

    if not (facts.phases or facts.engine_config or facts.args or facts.engine_stats_lines or facts.errors.events
            or facts.vllm_version):
        add(Finding(
            "not_a_vllm_log", "info", f"no vLLM line recognised in {facts.lines:,} lines", [],
            "nothing to judge: no version, configuration, phase, stats or error line",
            "pass the server's realtime vLLM log (`pbsvllm status` / the job record show its path); logs of vLLM "
            "0.6 to 0.33 are read",
        ))

    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: order.get(f.severity, 9))

    # ---- recommendation ------------------------------------------------------------------
    if plan is not None and plan_req is not None:
        rec = recommendation_from_plan(facts, plan, plan_req, current, load)
    else:
        rec = Recommendation(available=False, why_unavailable=plan_error or "no plan was made")
    return Diagnosis(log_path, facts, node, findings, rec, strengths(facts, load), load, current)


def recorded_plan_note(job_id: str, recorded: Dict[str, Any], facts: LogFacts) -> str:
    """One line comparing the plan a tracked job was submitted with and what
    its log shows (they differ when flags were overridden or the template
    was edited)."""
    keys = (("tensor_parallel_size", "TP"), ("pipeline_parallel_size", "PP"), ("data_parallel_size", "DP"),
            ("max_num_seqs", "max-num-seqs"), ("max_model_len", "max-model-len"))
    parts, diffs = [], []
    for k, label in keys:
        want = recorded.get(k)
        if want is None:
            continue
        parts.append(f"{label}={want}")
        got = getattr(facts, k, None)
        if got is not None and got != want:
            diffs.append(f"{label} {want} planned, {got} in the log")
    head = f"job {job_id} was submitted with the plan " + " ".join(parts)
    return head + ("; the log differs: " + "; ".join(diffs) if diffs else "; the log agrees")


def strengths(facts: LogFacts, load: Dict[str, Any]) -> List[str]:
    out = []
    pref = load.get("mean_busy_prefix_cache_hit_pct")
    if pref is not None and pref >= 30:
        out.append(f"prefix caching pays off ({pref:g}% mean hit rate while busy)")
    if facts.enable_chunked_prefill:
        out.append("chunked prefill is on")
    if facts.enforce_eager is False and not facts.cudagraph_disabled:
        out.append("CUDA graphs / torch.compile are on")
    if (facts.tensor_parallel_size or 1) == 1 and (facts.data_parallel_size or 1) > 1:
        out.append(f"data parallel ({facts.data_parallel_size} replicas) with no tensor parallel traffic")
    if not facts.error and facts.errors.engine_dead_after_shutdown:
        out.append("the EngineDeadError at the end is part of a normal shutdown, not a crash")
    return out
