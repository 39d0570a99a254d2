"""The doctor's findings, one small named function per finding.

Each rule reads the same :class:`Inputs` (the log's facts, the node, the
planner's plan when there is one, the current flags and the load) and
returns the findings it makes (none, one, or one per error kind or flag).
:data:`RULES` lists them in the order the report shows findings of the
same severity. docs/doctor.md's table of findings names the function of
each finding id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from pbsvllm.doctor.model import (
    CAP_BINDS,
    KV_FULL_PCT,
    KV_IDLE_PCT,
    MAX_LEN_SLACK,
    MIN_BUSY_LINES,
    PREFIX_LOW_PCT,
    Finding,
    LoadSummary,
    NodeShape,
)
from pbsvllm.doctor.recommend import _int_or_none, deprecated_in_log
from pbsvllm.vllmlog import LogFacts, strip_line

if TYPE_CHECKING:
    from pbsvllm.plan import Plan

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
    "ray_unsupported_platform": (
        "this vLLM build has no Ray executor",
        "the server cannot start: the job's Ray cluster formed, then vLLM refused to use it",
        "vLLM's CPU build cannot run --distributed-executor-backend ray (its platform has no Ray device); "
        "across nodes it runs native data parallel (--data-parallel-size with --headless ranks, "
        "docs/multinode.md); on GPUs check that the vLLM environment is the CUDA build",
    ),
    "ray_cluster": (
        "the Ray cluster across the job's nodes is incomplete",
        "the server cannot start: vLLM cannot place its workers on every node",
        "read the per-node logs (<alias>.<job>.node<i>.log): a worker that could not reach the head (firewall, "
        "wrong interface: set node_interface to the fast network, e.g. hsn0), two nodes with one address "
        "(VLLM_HOST_IP must differ per node), or GPUs missing on a node; `ray status` on the head shows the "
        "cluster",
    ),
    "node_check_failed": (
        "a node of the job failed the pre-launch check",
        "vLLM was not started",
        "the line names the node and what it lacks: the launcher could not reach it (node_launcher), no "
        "address on node_interface, or torch sees other GPUs than planned there; fix the profile or the "
        "resource request (select=N / nodes=N)",
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
    return strip_line(raw)


@dataclass(frozen=True)
class Inputs:
    """What every finding rule reads."""

    facts: LogFacts
    node: NodeShape
    plan: Optional[Plan]
    current: Dict[str, Tuple[str, str]]  # flag -> (value, where from), see current_configuration
    load: LoadSummary

    @property
    def gpu(self) -> bool:
        return self.node.device != "cpu"

    @property
    def tp(self) -> int:
        return self.facts.tensor_parallel_size or 1

    @property
    def dp(self) -> int:
        return self.facts.data_parallel_size or 1

    @property
    def busy(self) -> int:
        return self.load.busy_lines

    @property
    def peak_kv(self) -> Optional[float]:
        return self.load.peak_kv_cache_usage_pct

    @property
    def peak_run(self) -> int:
        return self.load.peak_running_per_engine or 0

    @property
    def peak_wait(self) -> int:
        return self.load.peak_waiting_per_engine

    @property
    def preemptions(self) -> int:
        return self.load.preemptions

    @property
    def max_num_seqs(self) -> Optional[int]:
        return _int_or_none(self.current.get("--max-num-seqs", ("", ""))[0])

    @property
    def context_tokens(self) -> Optional[int]:
        return self.load.context_tokens_per_request


Rule = Callable[[Inputs], List[Finding]]


# ---- errors -----------------------------------------------------------------------


def error_findings(x: Inputs) -> List[Finding]:
    """``error_<kind>``: one critical finding per error kind the log shows; a
    generic crash or init failure only when no specific cause was seen."""
    facts = x.facts
    seen_kinds: List[str] = []
    for ev in facts.errors.events:
        if ev.kind not in seen_kinds:
            seen_kinds.append(ev.kind)
    if facts.errors.crashed and "engine_crashed" not in seen_kinds:
        seen_kinds.append("engine_crashed")
    specific = any(k not in ("engine_crashed", "engine_init_failed") for k in seen_kinds)
    out: List[Finding] = []
    for kind in seen_kinds:
        if kind in ("engine_crashed", "engine_init_failed") and specific:
            continue  # the specific cause says it
        title, cost, fix = _ERROR_FIXES.get(kind, (kind, "the server failed", "see the quoted lines"))
        evidence = [(e.line_no, e.text) for e in facts.errors.events if e.kind == kind][:3]
        if kind == "engine_crashed" and facts.errors.crash_line and not evidence:
            evidence = _ev(facts, "engine_dead")
        if kind == "kv_cache_too_small" and facts.errors.suggested_max_model_len:
            fix = (f"restart with --max-model-len {facts.errors.suggested_max_model_len} (vLLM's own estimate of "
                   f"what the KV cache holds), or give the KV cache more memory (--gpu-memory-utilization, larger "
                   f"TP, --kv-cache-dtype fp8)")
        out.append(Finding("error_" + kind, "critical", title, evidence, cost, fix))
    return out


# ---- parallelism ----------------------------------------------------------------------


def tp_oversized(x: Inputs) -> List[Finding]:
    """``tp_oversized``: the planner picks a smaller TP than the log's for this
    model and node."""
    facts, node, plan, tp = x.facts, x.node, x.plan, x.tp
    if plan is None or not (tp > 1 and plan.tensor_parallel_size < tp):
        return []
    planned_tp, planned_dp = plan.tensor_parallel_size, plan.data_parallel_size
    per_gpu = f"{facts.model_load_gib:.2f} GiB of weights per GPU" if facts.model_load_gib else ""
    ev = _ev(facts, "config", "args") + _ev(facts, "model_load", "allreduce", limit=2)
    assumptions = []
    for key in ("gpus", "gpu_memory_gib", "interconnect"):
        if node.assumed(key) or node.sources.get(key, "").startswith("unknown"):
            assumptions.append(f"{key}: {node.sources[key]}")
    return [Finding(
        "tp_oversized",
        "critical" if node.interconnect == "pcie" or tp >= 4 else "high",
        f"tensor parallel {tp} for a model that fits {planned_tp} GPU" + ("s" if planned_tp > 1 else ""),
        _sorted(ev),
        (f"every layer of every token waits for an all-reduce across {tp} GPUs"
         + (" over PCIe" if node.interconnect == "pcie" else "")
         + (f" ({per_gpu})" if per_gpu else "")
         + f"; the same {tp * (facts.pipeline_parallel_size or 1) * x.dp} GPUs as {planned_dp} independent "
         f"replicas (TP={planned_tp}, DP={planned_dp}) serve {planned_dp}x the batch with no inter-GPU traffic"),
        (f"--tensor-parallel-size {planned_tp} --data-parallel-size {planned_dp}"
         if plan.data_parallel_mode != "replicas" else
         f"--tensor-parallel-size {planned_tp} with {planned_dp} replicas (separate servers: this vLLM has no "
         f"--data-parallel-size; pbsvllm's replicas mode starts them)")
        + f" (the planner: {plan.decisions.get('tensor_parallel_size', '')})",
        assumptions,
    )]


def _tp_over_pcie_applies(x: Inputs) -> bool:
    return x.tp > 2 and x.facts.custom_allreduce_pcie_warning


def tp_over_pcie(x: Inputs) -> List[Finding]:
    """``tp_over_pcie``: TP > 2 with vLLM's PCIe-only custom all-reduce warning."""
    if not _tp_over_pcie_applies(x):
        return []
    planned_tp = x.plan.tensor_parallel_size if x.plan is not None else None
    return [Finding(
        "tp_over_pcie",
        "high",
        f"TP={x.tp} over PCIe-only GPUs: custom all-reduce disabled",
        _ev(x.facts, "allreduce", limit=4),
        "vLLM's fast custom all-reduce only works on NVLink (or two PCIe GPUs); NCCL over PCIe adds latency "
        "to every layer's all-reduce, on every decoded token",
        (f"use TP={planned_tp} with data parallelism" if planned_tp is not None and planned_tp < x.tp else
         "use TP <= 2 on PCIe nodes, or a node whose GPUs are linked by NVLink")
        + "; if TP > 2 on PCIe is really needed, add --disable-custom-all-reduce to say so explicitly",
    )]


def custom_allreduce_disabled(x: Inputs) -> List[Finding]:
    """``custom_allreduce_disabled``: custom all-reduce off for lack of P2P or an
    odd world size (not reported with ``tp_over_pcie``)."""
    reason = x.facts.custom_allreduce_disabled_reason
    if _tp_over_pcie_applies(x) or not (x.tp > 1 and reason in ("no_p2p", "world_size")):
        return []
    return [Finding(
        "custom_allreduce_disabled",
        "medium",
        "custom all-reduce disabled (" + ("no GPU P2P" if reason == "no_p2p" else "unsupported world size") + ")",
        _ev(x.facts, "allreduce"),
        "all-reduces go through NCCL instead of vLLM's faster kernel",
        "check the GPUs' P2P capability (nvidia-smi topo -m); prefer a TP size of 2, 4 or 8 on P2P-linked GPUs",
    )]


# ---- eager ---------------------------------------------------------------------------------


def eager_mode(x: Inputs) -> List[Finding]:
    """``eager_mode``: ``--enforce-eager`` or the cudagraph-disabled message;
    high on GPUs, low on the CPU backend, medium when the device is assumed."""
    facts, node = x.facts, x.node
    if not (facts.enforce_eager or facts.cudagraph_disabled):
        return []
    ev = _ev(facts, "eager", "args", "config", limit=3)
    if node.assumed("device"):
        return [Finding(
            "eager_mode", "medium", "--enforce-eager (CUDA graphs / torch.compile off)", ev,
            "on GPUs every decode step launches each kernel from Python instead of replaying a captured CUDA "
            "graph; on vLLM's CPU backend it turns torch.compile off",
            "remove --enforce-eager (the planner never sets it)",
            [node.sources["device"]],
        )]
    if x.gpu:
        return [Finding(
            "eager_mode", "high", "CUDA graphs off (--enforce-eager)", ev,
            "every decode step launches each of its kernels from Python instead of replaying one captured CUDA "
            "graph; for a small model or a small batch the launch overhead is a large share of each step, so "
            "decode tokens/s drop most exactly where this server runs",
            "remove --enforce-eager (CUDA graphs are captured once at start-up; the planner never sets it)",
        )]
    return [Finding(
        "eager_mode", "low", "torch.compile off (--enforce-eager) on the CPU backend", ev,
        "the model runs uncompiled; start-up is faster (no compile) but each step does more Python work",
        "remove --enforce-eager unless start-up time matters more than throughput",
    )]


# ---- load ---------------------------------------------------------------------------------


def _kv_idle_applies(x: Inputs) -> bool:
    peak_kv = x.peak_kv
    return x.busy >= MIN_BUSY_LINES and peak_kv is not None and peak_kv < KV_IDLE_PCT and x.peak_run > 0


def kv_cache_idle(x: Inputs) -> List[Finding]:
    """``kv_cache_idle``: peak KV usage under 25% while busy."""
    if not _kv_idle_applies(x):
        return []
    plan, seqs, peak_run, peak_wait = x.plan, x.max_num_seqs, x.peak_run, x.peak_wait
    peak_kv = x.peak_kv or 0.0
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
    return [Finding(
        "kv_cache_idle",
        sev,
        f"KV cache at most {peak_kv:g}% used: {why}",
        _sorted(_stats_ev(x.facts, "running") + _ev(x.facts, "kv_size", "max_concurrency", limit=2)),
        f"{100 - peak_kv:.0f}% of the KV memory never held a request; {could_txt}, so throughput is a "
        "fraction of what the GPUs can do (decode is memory-bound: a step for many requests costs little more "
        "than a step for a few)",
        change,
    )]


def max_num_seqs_binds(x: Inputs) -> List[Finding]:
    """``max_num_seqs_binds``: running requests at ``--max-num-seqs``, requests
    waiting, the KV cache under 90% (not reported with ``kv_cache_idle``)."""
    seqs, peak_kv, peak_wait = x.max_num_seqs, x.peak_kv, x.peak_wait
    if _kv_idle_applies(x) or not (
        x.busy >= MIN_BUSY_LINES and seqs is not None and x.peak_run >= CAP_BINDS * seqs and peak_wait > 0
        and peak_kv is not None and peak_kv < KV_FULL_PCT
    ):
        return []
    return [Finding(
        "max_num_seqs_binds",
        "high",
        f"--max-num-seqs {seqs} stops the batch while the KV cache has room ({peak_kv:g}% used at most)",
        _sorted(_stats_ev(x.facts, "waiting") + _stats_ev(x.facts, "running")[:1] + _ev(x.facts, "args", limit=1)),
        f"up to {peak_wait} requests waited although {100 - peak_kv:.0f}% of the KV cache was free: they queue "
        "for a batch slot, not for memory",
        (f"raise --max-num-seqs (the plan: {x.plan.max_num_seqs} per replica)" if x.plan is not None else
         f"raise --max-num-seqs (e.g. to {min(1024, 2 ** math.ceil(math.log2(max(2, seqs * 2))))})"),
    )]


def kv_cache_full(x: Inputs) -> List[Finding]:
    """``kv_cache_full``: peak KV usage at or over 90% with requests waiting or
    preempted."""
    peak_kv, preempt, plan = x.peak_kv, x.preemptions, x.plan
    if not (peak_kv is not None and peak_kv >= KV_FULL_PCT and (x.peak_wait > 0 or preempt > 0)):
        return []
    more = (f"; the plan uses {plan.data_parallel_size} replica(s) of TP={plan.tensor_parallel_size}"
            if plan is not None else "")
    return [Finding(
        "kv_cache_full",
        "high",
        f"KV cache full ({peak_kv:g}%) with requests waiting" + (f" and {preempt} preemptions" if preempt else ""),
        _sorted(_stats_ev(x.facts, "kv") + _stats_ev(x.facts, "waiting")[:1] + _ev(x.facts, "preemption", limit=1)),
        "requests queue (time to first token grows) and preempted ones are recomputed from scratch",
        "more KV memory or more replicas: free GPUs -> more data-parallel replicas; --gpu-memory-utilization "
        "up to 0.95; --kv-cache-dtype fp8 (twice the tokens); a shorter --max-model-len" + more,
    )]


def batched_tokens_small(x: Inputs) -> List[Finding]:
    """``batched_tokens_small``: ``--max-num-batched-tokens`` below the plan's (GPUs)."""
    plan = x.plan
    mnbt = _int_or_none(x.current.get("--max-num-batched-tokens", ("", ""))[0])
    if not (x.gpu and mnbt is not None and plan is not None and mnbt < plan.max_num_batched_tokens):
        return []
    ctx = x.context_tokens
    detail = (f"; the requests seen used ~{ctx:,} tokens of context each, i.e. up to {math.ceil(ctx / mnbt)} "
              f"prefill steps per prompt" if ctx and ctx > mnbt else "")
    sev = "medium" if (ctx and ctx > mnbt) or x.peak_wait > 0 else "low"
    planned = plan.arg("--max-num-batched-tokens")
    return [Finding(
        "batched_tokens_small",
        sev,
        f"--max-num-batched-tokens {mnbt}: small prefill chunks",
        _ev(x.facts, "chunked_prefill", "args", limit=2),
        f"at most {mnbt} prompt tokens are processed per step, so long prompts take several steps to their "
        f"first token{detail}",
        f"--max-num-batched-tokens {plan.max_num_batched_tokens} (the plan: "
        f"{planned.reason if planned else ''})",
    )]


def _prefix_caching_off_applies(x: Inputs) -> bool:
    return x.facts.enable_prefix_caching is False and x.facts.engine_version == "V1"


def prefix_caching_off(x: Inputs) -> List[Finding]:
    """``prefix_caching_off``: prefix caching disabled on a V1 engine."""
    if not _prefix_caching_off_applies(x):
        return []
    return [Finding(
        "prefix_caching_off", "low", "prefix caching disabled", _ev(x.facts, "config", "args", limit=2),
        "prompts that share a prefix (system prompt, few-shot examples) are recomputed every time",
        "drop --no-enable-prefix-caching unless outputs must not depend on cache state",
    )]


def prefix_cache_low(x: Inputs) -> List[Finding]:
    """``prefix_cache_low``: under 5% mean prefix-cache hit rate while busy (not
    reported with ``prefix_caching_off``)."""
    pref = x.load.mean_busy_prefix_cache_hit_pct
    if _prefix_caching_off_applies(x) or not (pref is not None and x.busy >= MIN_BUSY_LINES
                                             and pref < PREFIX_LOW_PCT):
        return []
    return [Finding(
        "prefix_cache_low", "low", f"prefix-cache hit rate {pref:g}% while busy",
        _stats_ev(x.facts, "running")[:2],
        "no prompt reused a cached prefix: if your prompts share a system prompt or few-shot examples, "
        "their prefill is recomputed for every request",
        "if prompts share a prefix, put the shared part first and keep it byte-identical (no timestamps or "
        "request ids before it); if they do not, nothing to do",
    )]


def max_model_len_oversized(x: Inputs) -> List[Finding]:
    """``max_model_len_oversized``: ``--max-model-len`` over 8x the context
    requests used, and over 8192."""
    facts, plan, ctx = x.facts, x.plan, x.context_tokens
    mml = facts.max_model_len
    if not (mml and ctx and mml > MAX_LEN_SLACK * ctx and mml > 8192):
        return []
    sug = (plan.max_model_len if plan is not None and plan.max_model_len < mml else
           max(2048, 1 << math.ceil(math.log2(ctx * 2))))
    return [Finding(
        "max_model_len_oversized", "low",
        f"--max-model-len {mml:,} while requests used ~{ctx:,} tokens",
        _ev(facts, "max_model_len", "max_concurrency", limit=2),
        "vLLM must keep room for one sequence that long, and a few very long requests can take the whole "
        "KV cache from the others; the 'maximum concurrency' vLLM prints is computed at this length",
        f"--max-model-len {sug:,} if no request needs more (the plan's value; pbsvllm submit --max-model-len "
        "to choose)",
        ["the context per request is estimated from KV usage / running requests; the longest request in "
         "the log may be longer"],
    )]


# ---- flags ------------------------------------------------------------------------------------


def deprecated_flags(x: Inputs) -> List[Finding]:
    """``deprecated_flag`` / ``removed_flag``: a user flag deprecated or removed
    in the log's vLLM version (the flag table of :mod:`pbsvllm.flags`)."""
    out: List[Finding] = []
    for d in deprecated_in_log(x.facts):
        out.append(Finding(
            "deprecated_flag" if d["status"] == "deprecated" else "removed_flag",
            "low" if d["status"] == "deprecated" else "medium",
            f"{d['flag']} is {d['status']} (since vLLM {d['since']})",
            _ev(x.facts, "args", limit=1),
            "it still works in this version but will stop working" if d["status"] == "deprecated" else
            "it does not exist in this version",
            d["replacement"] and f"use {d['replacement']}" or "drop it",
        ))
    return out


# ---- observability --------------------------------------------------------------------------------


def stats_logging_disabled(x: Inputs) -> List[Finding]:
    """``stats_logging_disabled``: more than one API server, so no stats lines."""
    if not x.facts.stats_logging_disabled:
        return []
    return [Finding(
        "stats_logging_disabled", "low", "more than one API server: vLLM logs no engine stats",
        _ev(x.facts, "stats_disabled", limit=1),
        "no throughput, queue or KV-cache figures in the log: neither you nor `pbsvllm status/doctor` can see "
        "the load",
        "--api-server-count 1 (vLLM 0.32+ defaults to one API server per data-parallel rank)",
    )]


def no_stats(x: Inputs) -> List[Finding]:
    """``no_stats``: the server was ready but logged no stats line (not
    reported with ``stats_logging_disabled``)."""
    f = x.facts
    if f.stats_logging_disabled or not (f.engine_stats_lines == 0 and not f.error and "ready" in f.phases):
        return []
    return [Finding(
        "no_stats", "info", "no engine-stats lines",
        _ev(f, "ready", limit=1),
        "the load cannot be judged from this log (stats are off with --disable-log-stats, and idle intervals "
        "are logged at DEBUG)",
        "keep stats logging on, and read the log after the server has had traffic",
    )]


def not_a_vllm_log(x: Inputs) -> List[Finding]:
    """``not_a_vllm_log``: no version, configuration, phase, stats or error line."""
    f = x.facts
    if f.phases or f.engine_config or f.args or f.engine_stats_lines or f.errors.events or f.vllm_version:
        return []
    return [Finding(
        "not_a_vllm_log", "info", f"no vLLM line recognised in {f.lines:,} lines", [],
        "nothing to judge: no version, configuration, phase, stats or error line",
        "pass the server's realtime vLLM log (`pbsvllm status` / the job record show its path); logs of vLLM "
        "0.6 to 0.33 are read",
    )]


# ---- multi-node ------------------------------------------------------------------------


def cross_node_link(x: Inputs) -> List[Finding]:
    """``cross_node_socket``: NCCL moves the job's cross-node traffic over TCP sockets (``NET/Socket``)
    instead of the fabric; ``cross_node_unknown``: a multi-node log without NCCL's transport lines."""
    mn = x.facts.multinode
    if not mn.multi_node or not x.gpu:
        return []
    layout = (f"{len(mn.nodes)} nodes" if mn.nodes else "several nodes") + (
        f", PP={x.facts.pipeline_parallel_size}" if (x.facts.pipeline_parallel_size or 1) > 1 else "")
    if mn.socket_transport:
        return [Finding(
            "cross_node_socket", "high",
            "the cross-node link is the bottleneck: NCCL uses TCP sockets between nodes (NET/Socket)",
            mn.evidence[:4],
            (f"{layout}: every hand-off between pipeline stages (and every all-reduce that spans nodes) goes "
             f"through the kernel's TCP stack instead of the fabric's RDMA: a fraction of the link's bandwidth "
             f"at many times the latency, paid on every token"),
            ("load the site's NCCL network plugin so NCCL uses the fabric (its INFO lines then say NET/IB, "
             "NET/OFI or NET/AWS Libfabric; on Polaris the aws-ofi-nccl plugin of the conda module), set "
             "NCCL_SOCKET_IFNAME to the fast interface (profile [env], e.g. hsn0), and keep TP inside a node "
             "(pbsvllm's plans do: PP across nodes sends only activations between stages)"),
        )]
    if not mn.nccl_transports and (mn.layout == "ray" or (x.facts.pipeline_parallel_size or 1) > 1):
        return [Finding(
            "cross_node_unknown", "info",
            "which link NCCL uses between the nodes is not in the log",
            mn.evidence[:3],
            f"{layout}: if NCCL falls back to TCP sockets, the cross-node link bounds the server's speed",
            ("add NCCL_DEBUG = \"INFO\" to the profile's [env] for one run: NCCL then logs 'via NET/<transport>' "
             "per channel (Socket = TCP; IB, OFI, AWS Libfabric = the fabric), and `pbsvllm doctor` reads it"),
        )]
    return []


def multinode_layout(x: Inputs) -> List[Finding]:
    """``multinode_layout``: what the job's nodes did (Ray formation time, headless data parallel ranks)."""
    mn = x.facts.multinode
    if not mn.multi_node or x.facts.errors.failed:
        return []
    if mn.layout == "ray":
        what = (f"{mn.ray_nodes or len(mn.nodes)} nodes on a Ray cluster (formed in {mn.ray_formed_s} s)"
                if mn.ray_formed_s is not None else f"{len(mn.nodes)} nodes on a Ray cluster")
    elif mn.layout == "dp":
        what = f"{len(mn.nodes)} nodes: vLLM data parallel, {mn.headless_nodes} node(s) with headless ranks"
    elif mn.headless:
        what = "a headless rank of a multi-node server (its API server runs on the head node)"
    else:
        what = f"{len(mn.nodes)} nodes"
    return [Finding(
        "multinode_layout", "info", f"multi-node server: {what}", mn.evidence[:4],
        "no cost by itself; the per-node logs are <alias>.<job>.node<i>.log",
        "nothing to change; `pbsvllm doctor` on a node's log reads that node's side",
    )]


#: Every finding rule, in the order findings of one severity are reported.
RULES: Tuple[Rule, ...] = (
    error_findings,
    tp_oversized,
    tp_over_pcie,
    custom_allreduce_disabled,
    eager_mode,
    cross_node_link,
    multinode_layout,
    kv_cache_idle,
    max_num_seqs_binds,
    kv_cache_full,
    batched_tokens_small,
    prefix_caching_off,
    prefix_cache_low,
    max_model_len_oversized,
    deprecated_flags,
    stats_logging_disabled,
    no_stats,
    not_a_vllm_log,
)
