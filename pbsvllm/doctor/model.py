"""The doctor's data: findings, the node, flag changes, capacity, the
recommendation and the whole diagnosis (each with its JSON form)."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

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


@dataclass(frozen=True)
class LoadSummary:
    """The load seen in the engine-stats lines, over all engines: peaks,
    means while busy, and the context the running requests used (KV tokens in
    use / running requests). ``doctor --format json``'s ``load``."""

    engines: int
    stats_lines: int
    # the figures below are known only when the log has stats lines (engines > 0)
    busy_lines: int = 0
    peak_running_per_engine: Optional[int] = None
    peak_waiting_per_engine: int = 0
    peak_kv_cache_usage_pct: Optional[float] = None
    preemptions: int = 0
    lines_with_waiting: int = 0
    mean_busy_generation_tokens_per_s_per_engine: Optional[float] = None
    mean_busy_prompt_tokens_per_s_per_engine: Optional[float] = None
    mean_busy_running_per_engine: Optional[float] = None
    mean_busy_kv_cache_usage_pct: Optional[float] = None
    mean_busy_prefix_cache_hit_pct: Optional[float] = None
    context_tokens_per_request: Optional[int] = None
    context_tokens_per_request_median: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.engines:
            return {"engines": self.engines, "stats_lines": self.stats_lines}
        if self.context_tokens_per_request is None:
            del d["context_tokens_per_request"], d["context_tokens_per_request_median"]
        return d


@dataclass
class Diagnosis:
    log_path: str
    facts: LogFacts
    node: NodeShape
    findings: List[Finding]
    recommendation: Recommendation
    strengths: List[str]
    load: LoadSummary
    current: Dict[str, Tuple[str, str]]  # flag -> (value, where from)

    def to_json(self) -> Dict[str, Any]:
        return {
            "log": self.log_path,
            "facts": self.facts.to_json_facts(),
            "findings": [f.to_dict() for f in self.findings],
            "recommendation": self.recommendation.to_dict(),
            "node": self.node.to_dict(),
            "load": self.load.to_dict(),
            "current_configuration": {k: {"value": v, "source": s} for k, (v, s) in self.current.items()},
            "strengths": list(self.strengths),
            "lines_read": self.facts.lines,
        }
