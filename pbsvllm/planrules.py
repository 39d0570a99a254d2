"""The planner's rules, one small function each, in the order :func:`pbsvllm.plan.make_plan` applies them.

docs/planner.md explains every rule with its public source and names its function here.
Pure: no I/O, no heavy imports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.errors import ModelFactsError, PlanError
from pbsvllm.flags import is_known, parse_version
from pbsvllm.modelfacts import QUANT_BYTES_PER_PARAM, ModelFacts, check_model_name, quantized_weight_bytes
from pbsvllm.plantypes import (
    ACTIVATION_FIXED_GIB,
    DEFAULT_MAX_MODEL_LEN_CAP,
    DEFAULT_OUTPUT_LEN,
    DEFAULT_PROMPT_LEN,
    GIB,
    MULTIMODAL_EXTRA_GIB,
    TARGET_SEQS_PER_REPLICA,
    Hardware,
    Plan,
    PlanArg,
    Workload,
)

# ---------------------------------------------------------------------------
# memory model
# ---------------------------------------------------------------------------

def choose_gpu_memory_utilization(gpu_gib: float) -> Tuple[float, str]:
    if gpu_gib >= 70:
        u = 0.95
    elif gpu_gib >= 24:
        u = 0.92
    else:
        u = 0.90
    margin = gpu_gib * (1 - u)
    return u, (f"{u:.2f} of {gpu_gib:g} GiB: PBS gives the job whole GPUs, so only CUDA/NCCL context and "
               f"allocator slack need the remaining {margin:.1f} GiB; every extra GiB is KV cache")


def activation_gib(f: ModelFacts, tp: int, batched_tokens: int, max_seqs: int) -> float:
    """Peak non-weight, non-KV memory of one GPU (an estimate, deliberately generous)."""
    per_token = (4 * f.hidden_size + 3 * f.intermediate_size // max(1, tp)) * 2
    logits = max_seqs * f.vocab_size * 4 // max(1, tp)
    extra = MULTIMODAL_EXTRA_GIB if f.multimodal else 0.0
    return ACTIVATION_FIXED_GIB + extra + (batched_tokens * per_token + logits) / GIB


@dataclass(frozen=True)
class Inputs:
    """What every rule reads, resolved once by :func:`make_plan`."""

    facts: ModelFacts
    hw: Hardware
    workload: Workload
    version: str
    user: Tuple[Tuple[str, Tuple[str, ...]], ...]     # your vLLM flags, checked and grouped
    served: Optional[str] = None
    host: Optional[str] = None
    port: Optional[int] = None
    model_arg: Optional[str] = None
    model_flag: str = ""

    @property
    def u(self) -> Dict[str, List[str]]:
        return {name: list(vals) for name, vals in self.user}

    def user_int(self, flag: str) -> Optional[int]:
        u = self.u
        if flag not in u:
            return None
        try:
            val = int(u[flag][0])
        except (ValueError, IndexError):
            raise PlanError(f"vLLM flag {flag} needs an integer, got {' '.join(u[flag])!r}") from None
        if not 1 <= val <= 10**9:
            raise PlanError(f"vLLM flag {flag} must be between 1 and 1000000000, got {val}")
        return val


@dataclass(frozen=True)
class Shape:
    """Request shape and the weights to place (rules up to the layout)."""

    mml: int
    mml_reason: str
    native: int
    avg: int
    avg_reason: str
    kv_dtype: str
    kv_b: Optional[int]
    weight_bytes: int
    expert_bytes: int


@dataclass(frozen=True)
class Budget:
    """Per-GPU memory settings the layouts are sized with."""

    util: float
    util_reason: str
    mnbt: int
    mseqs_cap: int = 1024


@dataclass
class _Layout:
    tp: int
    pp: int
    nodes: int
    dp: int
    weights_gib: float
    act_gib: float
    kv_gib: float
    kv_bpt: int
    tokens: int
    fits: bool
    good: bool
    requests: float = 0.0        # requests of the average length the KV cache of one replica holds
    ep: bool = False             # experts sharded over TP x DP GPUs


def _layout(inp: Inputs, sh: Shape, b: Budget, *, tp: int, pp: int = 1, nodes: int = 1, dp: int = 1,
            target: int = 1, ep: bool = False) -> _Layout:
    f, hw = inp.facts, inp.hw
    dense = sh.weight_bytes - (sh.expert_bytes if ep else 0)
    weights = dense / (tp * pp) / GIB + ((sh.expert_bytes / (tp * pp * dp) / GIB) if ep else 0.0)
    act = activation_gib(f, tp, b.mnbt, b.mseqs_cap)
    kv = hw.gpu_memory_gib * b.util - weights - act
    bpt = f.kv_bytes_per_token(tp, pp, sh.kv_b, length=sh.mml, chunk=b.mnbt)
    tokens = int(kv * GIB // bpt) if kv > 0 and bpt > 0 else 0
    fits = tokens >= sh.mml
    if f.uniform_kv:
        requests = tokens / max(1, sh.avg)
    else:   # sliding-window layers keep at most their window, linear/Mamba layers a fixed state
        requests = max(0.0, kv * GIB) / max(1, f.request_bytes(sh.avg, b.mnbt, tp, pp, sh.kv_b))
    good = fits and requests >= target
    return _Layout(tp, pp, nodes, dp, weights, act, kv, bpt, tokens, fits, good, requests, ep)


def _pow2_up(x: float) -> int:
    return 1 if x <= 1 else 2 ** math.ceil(math.log2(x))


def _tp_candidates(f: ModelFacts, gpus: int) -> List[int]:
    out, t = [], 1
    while t <= gpus:
        if gpus % t == 0 and f.num_attention_heads % t == 0:
            out.append(t)
        t *= 2
    return out or [1]


def _target(inp: Inputs, dp: int) -> int:
    conc = inp.workload.concurrency
    return max(1, math.ceil(conc / dp)) if conc else TARGET_SEQS_PER_REPLICA


# ---------------------------------------------------------------------------
# the rules, in the order make_plan applies them
# ---------------------------------------------------------------------------

def rule_model_name(inp: Inputs) -> None:
    """The model reaches vLLM as its first argument: never a flag, never empty."""
    try:
        check_model_name(inp.model_arg or inp.facts.model)
    except ModelFactsError as exc:
        raise PlanError(exc.message, hint=exc.hint) from None


def rule_weights(inp: Inputs) -> Tuple[int, int]:
    """(weight bytes, routed-expert bytes): the checkpoint's, or vLLM's online quantization of a
    16-bit checkpoint (``--quantization fp8``: linear layers in 8 bits, embeddings and head in 16)."""
    f = inp.facts
    quant = next(iter(inp.u.get("--quantization") or []), None)
    if quant and quant in QUANT_BYTES_PER_PARAM and quant != (f.quantization or ""):
        wb = quantized_weight_bytes(f, quant)
        return wb, int(f.expert_bytes * wb / max(1, f.weight_bytes))
    return f.weight_bytes, f.expert_bytes


def rule_kv_cache_dtype(inp: Inputs) -> Tuple[str, Optional[int]]:
    """fp8 KV cache (yours or the workload's): 1 byte per element instead of 2."""
    kv_dtype = (inp.u.get("--kv-cache-dtype") or [inp.workload.kv_cache_dtype or ""])[0]
    return kv_dtype, (1 if kv_dtype.startswith("fp8") else None)


def rule_max_model_len(inp: Inputs, warnings: List[str]) -> Tuple[int, str, int]:
    """(max model length, reason, the model's own context)."""
    native = inp.facts.max_position_embeddings
    wl = inp.workload
    hint_len = (wl.prompt_len or 0) + (wl.output_len or 0)
    user = inp.user_int("--max-model-len")
    if user:
        mml, reason = user, "set by you"
    elif wl.max_model_len:
        mml, reason = int(wl.max_model_len), "set by you (--max-model-len)"
    elif hint_len:
        mml = min(native, max(2048, int(math.ceil(hint_len * 1.25 / 1024)) * 1024))
        reason = (f"expected requests of {hint_len} tokens (prompt + output) plus 25% headroom, rounded to "
                  f"1024; the model supports {native}")
    elif native > DEFAULT_MAX_MODEL_LEN_CAP:
        mml = DEFAULT_MAX_MODEL_LEN_CAP
        reason = (f"the model supports {native:,} tokens, but vLLM reserves KV cache for at least one "
                  f"full-length sequence and sizes its batching from it; {mml:,} keeps memory for "
                  f"concurrency (pass --max-model-len to change)")
    else:
        mml, reason = native, f"the model's own context length ({native:,})"
    if mml > native:
        warnings.append(f"max model length {mml:,} exceeds the model's max_position_embeddings ({native:,}); "
                        f"vLLM refuses this unless rope scaling is configured")
    return mml, reason, native


def rule_request_shape(inp: Inputs, mml: int) -> Tuple[int, str]:
    """Average tokens per request: --prompt-len + --output-len, else 1024 + 512."""
    wl = inp.workload
    hint_len = (wl.prompt_len or 0) + (wl.output_len or 0)
    avg = min(mml, (wl.prompt_len or DEFAULT_PROMPT_LEN) + (wl.output_len or DEFAULT_OUTPUT_LEN))
    reason = ("from your --prompt-len/--output-len" if hint_len else
              f"assumed {DEFAULT_PROMPT_LEN} prompt + {DEFAULT_OUTPUT_LEN} output tokens "
              f"(pass --prompt-len/--output-len)")
    return avg, reason


def rule_gpu_memory_utilization(inp: Inputs) -> Tuple[float, str]:
    """0.95 from 70 GiB, 0.92 from 24 GiB, else 0.90; yours wins."""
    util, reason = choose_gpu_memory_utilization(inp.hw.gpu_memory_gib)
    u = inp.u
    if "--gpu-memory-utilization" in u:
        given = u["--gpu-memory-utilization"][0]
        try:
            util = float(given)
        except ValueError:
            raise PlanError(f"--gpu-memory-utilization needs a number, got {given!r}") from None
        if not (math.isfinite(util) and 0 < util <= 1):
            raise PlanError(f"--gpu-memory-utilization must be a fraction in (0, 1], got {given!r}")
        reason = "set by you"
    return util, reason


def rule_batch_budget(inp: Inputs, util: float, util_reason: str) -> Budget:
    """The prefill chunk the layouts are sized with: 16384 from 70 GiB, else 8192; more for long prompts."""
    mnbt = 16384 if inp.hw.gpu_memory_gib >= 70 else 8192
    prompt = inp.workload.prompt_len
    if prompt and prompt > mnbt:
        mnbt = min(32768, _pow2_up(prompt))
    mnbt = inp.user_int("--max-num-batched-tokens") or mnbt
    return Budget(util, util_reason, mnbt)


def rule_smallest_tp(inp: Inputs, sh: Shape, b: Budget) -> Tuple[Optional[_Layout], List[_Layout]]:
    """Rule 1: the smallest TP (dividing the GPUs and the heads) whose KV cache holds the target
    concurrency; DP over the remaining GPUs. (chosen or None, every one-node layout tried)."""
    gpus = inp.hw.gpus_per_node
    fixed_tp, fixed_pp, fixed_dp = (inp.user_int("--tensor-parallel-size"), inp.user_int("--pipeline-parallel-size"),
                                    inp.user_int("--data-parallel-size"))
    layouts = []
    for tp in ([fixed_tp] if fixed_tp else _tp_candidates(inp.facts, gpus)):
        pp = fixed_pp or 1
        dp = fixed_dp or max(1, gpus // (tp * pp))
        layouts.append(_layout(inp, sh, b, tp=tp, pp=pp, dp=dp, target=_target(inp, dp),
                               ep=shards_experts(inp, dp)))
    if fixed_tp:
        return layouts[0], layouts
    good = [lay for lay in layouts if lay.good]
    fitting = [lay for lay in layouts if lay.fits]
    chosen = rule_pcie(inp, fitting)
    if chosen is None and good:
        chosen = good[0]
    elif chosen is None and fitting:
        chosen = max(fitting, key=lambda lay: lay.requests * lay.dp)
    return chosen, layouts


def rule_pcie(inp: Inputs, fitting: List[_Layout]) -> Optional[_Layout]:
    """Rule 3: on PCIe-only GPUs the smallest TP that fits at all, not the one that holds the most."""
    if inp.hw.interconnect == "pcie" and fitting:
        return fitting[0]
    return None


def shards_experts(inp: Inputs, dp: int) -> bool:
    """vLLM shards a MoE model's routed experts over all TP x DP GPUs whenever it runs DP ranks
    (``--data-parallel-size`` > 1): tensor-parallel style by default, whole experts per GPU with
    ``--enable-expert-parallel``. Separate servers (replicas mode, vLLM < 0.8.5) replicate them."""
    return inp.facts.moe is not None and dp > 1 and is_known("--data-parallel-size", inp.version)


def rule_expert_parallel(inp: Inputs, sh: Shape, chosen: Optional[_Layout]) -> Tuple[bool, str]:
    """MoE models with DP ranks: ``--enable-expert-parallel``, and why. (add the flag?, reason or "").

    With DP > 1 vLLM already shards the experts over the TP x DP GPUs (so the layouts of rule 1
    count 1/(TP x DP) of them per GPU); by default each expert is split tensor-parallel style over
    all of them, which leaves every GPU thin slices of every expert and all-gathers every rank's
    tokens in each MoE layer. Expert parallelism keeps whole experts on each GPU and sends each
    token only to its top-k experts (an all-to-all): vLLM's docs recommend it with DP."""
    f, hw = inp.facts, inp.hw
    moe = f.moe
    if moe is None or chosen is None:
        return False, ""
    exp_gib = sh.expert_bytes / GIB
    head = (f"{moe.experts} experts (top-{moe.experts_per_token}) in {moe.moe_layers} MoE layers = {exp_gib:.1f} of "
            f"{sh.weight_bytes / GIB:.1f} GiB of weights")
    if chosen.dp <= 1 or chosen.nodes > 1:
        return False, (f"no expert parallelism: {head}; one replica of TP={chosen.tp} x PP={chosen.pp} shards them "
                       f"tensor-parallel style")
    if not chosen.ep:    # DP without vLLM's DP ranks: separate servers, each with every expert
        return False, (f"no expert parallelism: {head}; vLLM {inp.version} has no --data-parallel-size / "
                       f"--enable-expert-parallel (0.8.5), so each of the {chosen.dp} servers holds every expert")
    if not is_known("--enable-expert-parallel", inp.version):
        return False, (f"{head}, sharded tensor-parallel style over the {chosen.tp * chosen.dp} GPUs of the DP group; "
                       f"vLLM {inp.version} has no --enable-expert-parallel")
    n = chosen.tp * chosen.dp
    dense_gib = (sh.weight_bytes - sh.expert_bytes) / GIB
    whole = dense_gib + exp_gib
    alone = (f"; {chosen.dp} separate servers would each need all {whole:.1f} GiB per GPU set"
             + (" (more than a GPU holds)" if whole / chosen.tp > hw.gpu_memory_gib * 0.95 else ""))
    mla = "; data-parallel attention also gives each rank its own MLA latent cache (TP would copy it)" \
        if f.is_mla else ""
    pcie = "; over PCIe every MoE layer's exchange crosses the PCIe links either way" \
        if hw.interconnect == "pcie" else ""
    return True, (f"expert parallel: {head}; with {chosen.dp} DP ranks vLLM shards them over the {n} GPUs anyway, "
                  f"so each GPU keeps {exp_gib / n:.1f} GiB of experts + {dense_gib / chosen.tp:.1f} GiB of the rest "
                  f"({chosen.requests:.0f} requests of {sh.avg} tokens per replica){alone}; this flag places whole "
                  f"experts on each GPU and sends each token only to its top-{moe.experts_per_token} "
                  f"(an all-to-all per MoE layer) instead of splitting every expert over all {n} GPUs and "
                  f"all-gathering every rank's tokens{mla}{pcie}")


def rule_pipeline_across_nodes(inp: Inputs, sh: Shape, b: Budget, chosen: Optional[_Layout], fits_well: bool,
                               decisions: Dict[str, str]) -> Tuple[Optional[_Layout], bool]:
    """Rule 4: PP across nodes only when one node cannot hold the model (TP = GPUs per node inside)."""
    hw, f = inp.hw, inp.facts
    fixed_tp = inp.user_int("--tensor-parallel-size")
    if not (chosen is None or not chosen.fits or (not fits_well and hw.nodes > 1 and not fixed_tp)):
        return chosen, fits_well
    tp = max(_tp_candidates(f, hw.gpus_per_node))
    for n in range(2, max(hw.nodes, 8) + 1):
        if n > f.num_layers:
            break
        lay = _layout(inp, sh, b, tp=tp, pp=n, nodes=n, dp=1, target=_target(inp, 1))
        if lay.fits:
            if n <= hw.nodes and (chosen is None or not chosen.fits or lay.good):
                decisions["nodes"] = (f"one node of {hw.describe()} cannot hold the model well; "
                                      f"{n} nodes with TP={lay.tp} inside a node and PP={n} across nodes")
                return lay, lay.good
            break
    return chosen, fits_well


def rule_data_parallel(inp: Inputs, ch: _Layout, decisions: Dict[str, str]) -> str:
    """Rule 2: DP over the GPUs TP leaves (``--data-parallel-size``, vLLM >= 0.8.5), else separate
    servers (replicas mode). Returns the data-parallel mode."""
    dp, tp, gpus = ch.dp, ch.tp, inp.hw.gpus_per_node
    dp_mode = "vllm" if dp > 1 else "none"
    if dp > 1 and not is_known("--data-parallel-size", inp.version):
        dp_mode = "replicas"
    if inp.user_int("--data-parallel-size"):
        decisions["data_parallel_size"] = f"DP={dp} set by you"
    elif dp > 1 and ch.ep:
        decisions["data_parallel_size"] = (f"{dp} data-parallel attention ranks with the experts sharded over all "
                                           f"{tp * dp} GPUs (expert parallel): {dp}x the batch capacity of one")
    elif dp > 1:
        decisions["data_parallel_size"] = (
            f"{gpus} GPUs / TP={tp} = {dp} independent replicas: {dp}x the batch capacity with no inter-GPU traffic"
            + ("" if dp_mode == "vllm" else f"; vLLM {inp.version} has no --data-parallel-size (added in 0.8.5), "
               f"so {dp} separate servers are needed (replicas mode)"))
    else:
        decisions["data_parallel_size"] = "one replica uses all the GPUs it needs"
    return dp_mode


def rule_batch_limits(inp: Inputs, sh: Shape, b: Budget, ch: _Layout) -> Tuple[int, str, int, str]:
    """Rule 6: --max-num-seqs from the KV capacity (2x the average requests it holds, to a power of
    two, 64..1024 per replica); --max-num-batched-tokens the prefill budget. (mseqs, why, mnbt, why)."""
    hw, dp = inp.hw, ch.dp
    per_replica_cap = ch.requests
    mseqs = max(64, min(b.mseqs_cap, _pow2_up(2 * per_replica_cap)))
    conc = inp.workload.concurrency
    if conc:
        mseqs = max(mseqs, min(b.mseqs_cap, math.ceil(conc / dp / 16) * 16))
    holds = (f"the KV cache holds {ch.tokens:,} tokens per replica = ~{per_replica_cap:.0f} requests of {sh.avg} tokens"
             if inp.facts.uniform_kv else
             f"the KV cache holds ~{per_replica_cap:.0f} requests of {sh.avg} tokens per replica (per layer type: "
             f"sliding-window layers keep at most their window, linear/Mamba layers a fixed state)")
    mseqs_reason = (f"{holds}; requests vary in length and vLLM admits one only when KV blocks are free, so "
                    f"{mseqs} (2x that, to a power of two, at most {b.mseqs_cap}) lets the batch fill the cache "
                    f"instead of stopping at vLLM's default (256 on A100 / GPUs under 70 GiB)")
    if dp > 1:
        mseqs_reason += f"; per replica ({dp} replicas: {mseqs * dp} in total)"
    mseqs = inp.user_int("--max-num-seqs") or mseqs
    mnbt = max(b.mnbt, mseqs)
    vllm_default = ("2048 on A100s and GPUs under 70 GiB" if hw.gpu_memory_gib < 70 or "A100" in hw.gpu_name
                    else "8192, or 16384 from 160 GiB in vLLM 0.33")
    mnbt_reason = (f"prefill chunk of {mnbt} tokens per step (vLLM's default: {vllm_default}): fewer steps "
                   f"for long prompts, so faster time to first token, at a bounded cost in activation memory "
                   f"(counted above)")
    if parse_version(inp.version) < (0, 8, 0) and mnbt < sh.mml:
        mnbt_reason += "; chunked prefill is enabled so that it may be smaller than the max model length"
    return mseqs, mseqs_reason, mnbt, mnbt_reason


def rule_api_server_count(inp: Inputs, ch: _Layout, dp_mode: str) -> Optional[PlanArg]:
    """Rule 8 (with DP): one API server, so the per-engine stats lines stay in the log."""
    if ch.dp > 1 and dp_mode == "vllm" and is_known("--api-server-count", inp.version):
        return PlanArg("--api-server-count", ("1",), "one API server keeps the per-engine stats lines in the log "
                       "(vLLM 0.32+ defaults to one API server per DP rank and then logs no stats at all); one "
                       "front end is plenty for a node")
    return None


def rule_version_flags(inp: Inputs, sh: Shape, ch: _Layout, args: List[PlanArg]) -> None:
    """Rule 8: only flags the target vLLM knows, and the ones an old or new vLLM needs."""
    version, v = inp.version, parse_version(inp.version)

    def add(flag: str, vals: List[Any], why: str) -> None:
        args.append(PlanArg(flag, tuple(str(x) for x in vals), why))

    if v < (0, 8, 0):
        add("--enable-chunked-prefill", [], "V0 engine: chunked prefill lets prefill and decode share a step and "
            "allows a batch budget smaller than the max model length")
    if inp.hw.interconnect == "pcie" and ch.tp > 2:
        add("--disable-custom-all-reduce", [], "custom all-reduce is not supported on more than two PCIe-only GPUs; "
            "vLLM disables it anyway and warns, this says so explicitly")
    if sh.kv_dtype and "--kv-cache-dtype" not in inp.u:
        add("--kv-cache-dtype", [sh.kv_dtype], f"{sh.kv_dtype} KV cache: half the bytes per token, twice the tokens")
    if v < (0, 10, 2) and is_known("--disable-log-requests", version):
        add("--disable-log-requests", [], f"vLLM {version} logs every request by default (not from 0.10.2 on); "
            "that floods the realtime log under load")


def _kv_words(f: ModelFacts, ch: _Layout, kv_b: Optional[int]) -> str:
    b = f.kv_dtype_bytes(kv_b)
    if f.is_mla:
        head = f"{ch.kv_bpt:,} bytes/token/GPU (MLA)"
    elif f.uniform_kv:
        head = (f"{ch.kv_bpt:,} bytes/token/GPU (2 x {math.ceil(f.num_layers / ch.pp)} layers x "
                f"{max(1, f.num_kv_heads // ch.tp)} KV heads x {f.head_dim} x {b} B)")
    else:
        parts = ", ".join(f"{t.layers} {t.kind.replace('_', ' ')}" + (f" (window {t.window})" if t.window else "")
                          for t in f.kv_types)
        head = (f"{ch.kv_bpt:,} bytes/token/GPU as vLLM counts it over its layer slots ({parts}); "
                f"~{ch.requests:.0f} requests of the average length fit")
    return head + f" -> {ch.tokens:,} tokens per replica"


def _tp_reason(inp: Inputs, sh: Shape, ch: _Layout, layouts: List[_Layout]) -> str:
    hw, avg = inp.hw, sh.avg
    if ch.nodes > 1:
        return (f"TP={ch.tp} inside each node ({hw.interconnect}); the model needs {ch.nodes} nodes, joined by "
                f"pipeline parallelism")
    head = (f"{sh.weight_bytes / GIB:.1f} GiB of weights; at TP={ch.tp} each GPU keeps {ch.kv_gib:.1f} GiB for KV "
            f"cache = {ch.tokens:,} tokens = {ch.requests:.0f} requests of {avg} tokens")
    if ch.ep and ch.tp == 1:
        return (f"TP=1: with the experts sharded over the node's {ch.dp} DP ranks each GPU holds the model ({head}, "
                f"target {_target(inp, ch.dp)}); tensor parallelism would add an all-reduce to every layer")
    if ch.tp == 1:
        return (f"TP=1: the whole model fits one GPU ({head}, target {_target(inp, ch.dp)}); tensor parallelism "
                f"would only add all-reduce traffic to every layer of every token")
    smaller = [lay for lay in layouts if lay.tp < ch.tp]
    why_not = "; ".join(
        f"TP={lay.tp} would leave {max(0.0, lay.kv_gib):.1f} GiB = {lay.tokens:,} tokens"
        + (" (less than one max-length sequence)" if not lay.fits else f" = {lay.requests:.0f} requests")
        for lay in smaller)
    extra = " over PCIe only because the model needs it" if hw.interconnect == "pcie" else ""
    return f"TP={ch.tp}{extra}: smallest TP that holds the model well ({head}); {why_not}"


def _alternatives(inp: Inputs, sh: Shape, b: Budget, chosen: Optional[_Layout]) -> List[Dict[str, Any]]:
    f, hw, avg = inp.facts, inp.hw, sh.avg
    alts: List[Dict[str, Any]] = []
    tp_max = max(_tp_candidates(f, hw.gpus_per_node))
    for n in range(2, 9):
        if n > f.num_layers:
            break
        lay = _layout(inp, sh, b, tp=tp_max, pp=n, nodes=n, dp=1, target=_target(inp, 1))
        if lay.good or (lay.fits and n == 8):
            alts.append({"nodes": n, "tensor_parallel_size": tp_max, "pipeline_parallel_size": n,
                         "data_parallel_size": 1, "kv_cache_tokens": lay.tokens,
                         "summary": f"{n} nodes: TP={tp_max} PP={n} (pass --nodes {n}) -> {lay.tokens:,} KV tokens, "
                                    f"~{lay.tokens / avg:.0f} requests of {avg} tokens"})
            break
    if sh.weight_bytes > f.params * 1.0 + 1 and not f.quantization:
        qbytes = quantized_weight_bytes(f, "fp8")
        q = dataclasses.replace(sh, weight_bytes=qbytes, expert_bytes=int(sh.expert_bytes / 2))
        for tp in _tp_candidates(f, hw.gpus_per_node):
            dp = hw.gpus_per_node // tp
            lay = _layout(inp, q, b, tp=tp, dp=dp, target=_target(inp, dp), ep=shards_experts(inp, dp))
            if lay.good:
                alts.append({"nodes": 1, "tensor_parallel_size": tp, "pipeline_parallel_size": 1,
                             "data_parallel_size": dp, "quantization": "fp8", "kv_cache_tokens": lay.tokens,
                             "summary": f"1 node with fp8 weights: TP={tp} DP={dp} (pass --quantization fp8, or "
                                        f"serve an fp8 checkpoint) -> {lay.tokens:,} KV tokens per replica"})
                break
    if chosen is None or not chosen.fits:
        best_tokens = max(_layout(inp, sh, b, tp=tp, dp=hw.gpus_per_node // tp,
                                  ep=shards_experts(inp, hw.gpus_per_node // tp)).tokens
                          for tp in _tp_candidates(f, hw.gpus_per_node))
        short = (best_tokens // 1024) * 1024
        if short >= 2048:
            alts.append({"nodes": 1, "max_model_len": short,
                         "summary": f"1 node with a shorter context: --max-model-len {short} "
                                    f"(KV cache for about one such sequence only)"})
    return alts


def rule_cpu(inp: Inputs, sh: Shape, decisions: Dict[str, str], warnings: List[str]) -> Plan:
    """Rule 9: the CPU backend: TP=1, DP=1, the KV cache is VLLM_CPU_KVCACHE_SPACE GiB,
    --max-num-seqs at most 256, --max-num-batched-tokens 2048."""
    f, hw, mml, avg = inp.facts, inp.hw, sh.mml, sh.avg
    bpt = f.kv_bytes_per_token(1, 1, sh.kv_b, length=mml, chunk=2048)
    tokens = int(hw.cpu_kvcache_gib * GIB // bpt) if bpt else 0
    kv_bytes = hw.cpu_kvcache_gib * GIB
    fits = tokens >= mml
    if not fits:
        short = max(0, (tokens // 256) * 256)
        raise PlanError(
            f"{f.model}: the CPU KV cache of {hw.cpu_kvcache_gib:g} GiB (VLLM_CPU_KVCACHE_SPACE) holds "
            f"{tokens:,} tokens at {bpt:,} bytes/token, less than the max model length {mml:,}",
            hint=f"raise env.VLLM_CPU_KVCACHE_SPACE in the profile or pass --max-model-len {short}" if short else
            "raise env.VLLM_CPU_KVCACHE_SPACE in the profile")
    decisions["tensor_parallel_size"] = "TP=1: the CPU backend runs one engine on this machine's cores; no GPUs"
    decisions["data_parallel_size"] = "DP=1: one CPU engine already uses every core; a second would halve each"
    decisions["nodes"] = "one machine"
    decisions["memory"] = (f"KV cache {hw.cpu_kvcache_gib:g} GiB from VLLM_CPU_KVCACHE_SPACE (vLLM's CPU backend "
                           f"ignores --gpu-memory-utilization for it)")
    decisions["kv_cache"] = f"{bpt:,} bytes/token -> {tokens:,} tokens"
    decisions["model"] = f"{f.model}: {f.weight_gib:.2f} GiB of weights; facts from {f.source}"
    cap = tokens / avg if f.uniform_kv else kv_bytes / max(1, f.request_bytes(avg, 2048, 1, 1, sh.kv_b))
    mseqs = max(16, min(256, _pow2_up(cap)))
    mseqs = inp.user_int("--max-num-seqs") or mseqs
    mnbt = max(2048, mseqs)
    args = [PlanArg("--tensor-parallel-size", ("1",), decisions["tensor_parallel_size"])]
    if mml != sh.native:
        args.append(PlanArg("--max-model-len", (str(mml),), sh.mml_reason))
    args.append(PlanArg("--max-num-seqs", (str(mseqs),),
                        f"the KV cache holds {tokens:,} tokens = ~{cap:.0f} requests of {avg} tokens; capped at 256 "
                        f"on a CPU, where larger batches only queue for the same cores"))
    args.append(PlanArg("--max-num-batched-tokens", (str(mnbt),),
                        "vLLM's CPU default (2048) made explicit: a CPU is compute-bound, bigger prefill chunks "
                        "only stall running decodes longer"))
    conc = tokens / mml
    return rule_user_flags(inp, args, decisions, warnings, tp=1, pp=1, dp=1, nodes=1, gpus_used=0, mml=mml,
                           mseqs=mseqs, mnbt=mnbt, util=None, tokens=tokens, avg=avg, bpt=bpt, fits_well=True,
                           alternatives=[], dp_mode="none", memory={"cpu_kvcache_gib": hw.cpu_kvcache_gib,
                                                                    "kv_bytes_per_token_tp1": bpt},
                           concurrency=conc, ep=False, kv_layers=f.kv_detail(1, 1, sh.kv_b, mml, 2048))


def rule_user_flags(inp: Inputs, args: List[PlanArg], decisions: Dict[str, str], warnings: List[str],
                    **k: Any) -> Plan:
    """Rules 5 and 8: your --vllm-arg flags win (replacing the planner's, with its reason kept);
    --enforce-eager is never planned and warned about when you pass it; serving flags first."""
    serve: List[PlanArg] = []
    if inp.served:
        serve.append(PlanArg("--served-model-name", (inp.served,), "the name clients send as \"model\" "
                             "(default: the alias)", "serve"))
    if inp.host:
        serve.append(PlanArg("--host", (inp.host,), "listen address: all interfaces so the login node can reach "
                             "the compute node" if inp.host == "0.0.0.0" else "listen address", "serve"))
    if inp.port is not None:
        serve.append(PlanArg("--port", (str(inp.port),), "requested port; the job moves up to the next free one "
                             "at start time", "serve"))
    merged = serve + args
    for name, values in inp.user:
        reason = "set by you (--vllm-arg)"
        if name == "--enforce-eager":
            reason = ("set by you: disables CUDA graphs and torch.compile, which costs 30-50% of decode speed on GPUs; "
                      "the planner never sets it")
            if inp.hw.device == "cuda":
                warnings.append("--enforce-eager disables CUDA graphs: decode is typically 30-50% slower; "
                                "use it only for debugging")
        for i, a in enumerate(merged):
            if a.flag == name:
                merged[i] = PlanArg(name, tuple(values), f"{reason}; the planner suggested "
                                    f"{' '.join(a.values) or 'it'} because: {a.reason}", "user")
                break
        else:
            merged.append(PlanArg(name, tuple(values), reason, "user"))
    f = inp.facts
    model = inp.model_arg or f.model
    model_args = (inp.model_flag, model) if inp.model_flag else (model,)
    return Plan(
        model=f.model, vllm_version=inp.version, device=inp.hw.device,
        tensor_parallel_size=k["tp"], pipeline_parallel_size=k["pp"], data_parallel_size=k["dp"], nodes=k["nodes"],
        gpus_per_node=k["gpus_used"], max_model_len=k["mml"], max_num_seqs=k["mseqs"],
        max_num_batched_tokens=k["mnbt"], gpu_memory_utilization=k["util"], kv_cache_tokens=k["tokens"],
        max_concurrency=k["concurrency"], expected_request_tokens=k["avg"],
        kv_bytes_per_token=k["bpt"], memory=k["memory"], args=tuple(merged), model_args=model_args,
        fits_well=k["fits_well"], warnings=tuple(warnings), alternatives=tuple(k["alternatives"]),
        data_parallel_mode=k["dp_mode"], decisions=decisions, expert_parallel=k["ep"],
        kv_cache_layers=tuple(k["kv_layers"]),
    )
