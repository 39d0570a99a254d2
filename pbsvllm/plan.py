"""The planner: model facts + hardware + workload + vLLM version -> a Plan.

Pure: no I/O, no heavy imports (``doctor`` imports it). The rules, with their
reasons (docs/planner.md works the seed case through):

1. **Smallest tensor parallel size that holds the model well.** For each TP
   (1, 2, 4, ... dividing the GPUs and the attention heads) the memory of one
   GPU is split as ``usable = memory x utilization = weights/TP + activations
   + KV cache``; the KV cache must hold at least one max-length sequence
   (vLLM refuses to start otherwise) and, to hold the model *well*, enough
   tokens for the target concurrency per replica at the expected request
   length. The smallest TP that does is taken: every extra TP rank adds
   all-reduce traffic to every layer of every token.
2. **Data parallel across the remaining GPUs** (``--data-parallel-size``,
   vLLM >= 0.8.5): independent replicas behind one port, no communication.
3. **No TP across PCIe-only GPUs unless the model needs it**: on PCIe the
   smallest TP that *fits* is taken even when a larger one would hold more
   KV cache.
4. **Pipeline parallel across nodes only when one node cannot hold the
   model** (TP = GPUs per node inside a node, PP = nodes).
5. **Never ``--enforce-eager``**; batch limits sized from the predicted KV
   capacity; ``--gpu-memory-utilization`` chosen from the GPU's size; only
   flags the target vLLM version knows; user flags win.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import PlanError
from pbsvllm.flags import check_user_args, is_known, parse_version
from pbsvllm.modelfacts import QUANT_BYTES_PER_PARAM, ModelFacts

GIB = 2**30
DEFAULT_MAX_MODEL_LEN_CAP = 32768     # when the model's own context is longer and nothing else is said
DEFAULT_PROMPT_LEN = 1024             # expected request shape when no hint is given
DEFAULT_OUTPUT_LEN = 512
TARGET_SEQS_PER_REPLICA = 64          # below this a decode batch leaves a GPU mostly idle
ACTIVATION_FIXED_GIB = 1.0            # CUDA context, NCCL buffers, CUDA-graph pools, allocator slack
MULTIMODAL_EXTRA_GIB = 1.0            # vision encoder activations / encoder cache


@dataclass(frozen=True)
class Hardware:
    gpus_per_node: int
    gpu_memory_gib: float
    interconnect: str = "nvlink"      # nvlink | pcie | none
    nodes: int = 1                    # most nodes one server may use
    device: str = "cuda"              # cuda | cpu
    gpu_name: str = ""
    cpu_kvcache_gib: float = 4.0      # VLLM_CPU_KVCACHE_SPACE on the CPU backend

    @classmethod
    def from_profile(cls, profile: Any) -> "Hardware":
        return cls(
            gpus_per_node=int(profile.gpus_per_node),
            gpu_memory_gib=float(profile.gpu_memory_gib),
            interconnect=profile.interconnect,
            nodes=int(profile.nodes),
            device=profile.device,
            gpu_name=profile.gpu_name,
            cpu_kvcache_gib=float(profile.cpu_kvcache_space_gib) if profile.device == "cpu" else 4.0,
        )

    def describe(self) -> str:
        if self.device == "cpu":
            return f"CPU (KV cache {self.cpu_kvcache_gib:g} GiB)"
        name = f" {self.gpu_name}" if self.gpu_name else ""
        return f"{self.gpus_per_node}x{name} {self.gpu_memory_gib:g} GiB ({self.interconnect})"


@dataclass(frozen=True)
class Workload:
    max_model_len: Optional[int] = None
    concurrency: Optional[int] = None      # expected concurrent requests, whole server
    prompt_len: Optional[int] = None       # expected tokens in, per request
    output_len: Optional[int] = None       # expected tokens out, per request
    kv_cache_dtype: Optional[str] = None   # e.g. fp8


@dataclass(frozen=True)
class PlanArg:
    flag: str
    values: Tuple[str, ...]
    reason: str
    source: str = "plan"                   # plan | user | serve


@dataclass(frozen=True)
class Plan:
    model: str
    vllm_version: str
    device: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    nodes: int
    gpus_per_node: int                     # GPUs used per node
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: Optional[float]
    kv_cache_tokens: int                   # predicted, per replica
    max_concurrency: float                 # whole server, at max_model_len
    expected_request_tokens: int
    kv_bytes_per_token: int                # per GPU
    memory: Dict[str, float]
    args: Tuple[PlanArg, ...]
    model_args: Tuple[str, ...]            # [model] or [--model, model]
    fits_well: bool = True
    warnings: Tuple[str, ...] = ()
    alternatives: Tuple[Dict[str, Any], ...] = ()
    data_parallel_mode: str = "vllm"       # vllm (--data-parallel-size) | replicas | none
    decisions: Dict[str, str] = field(default_factory=dict)

    @property
    def vllm_args(self) -> List[str]:
        """The argv exactly as passed to vLLM after the launcher (``vllm serve``)."""
        out = list(self.model_args)
        for a in self.args:
            out.append(a.flag)
            out.extend(a.values)
        return out

    @property
    def reasons(self) -> Dict[str, str]:
        r = {"model": self.decisions.get("model", "")} if self.model_args else {}
        r.update({a.flag: a.reason for a in self.args})
        return r

    @property
    def replicas(self) -> int:
        return self.data_parallel_size

    @property
    def max_concurrency_per_replica(self) -> float:
        return self.kv_cache_tokens / self.max_model_len if self.max_model_len else 0.0

    def arg(self, flag: str) -> Optional[PlanArg]:
        for a in self.args:
            if a.flag == flag:
                return a
        return None

    def to_json(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "vllm_version": self.vllm_version,
            "device": self.device,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "data_parallel_mode": self.data_parallel_mode,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "vllm_args": self.vllm_args,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_concurrency": round(self.max_concurrency, 2),
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "expected_request_tokens": self.expected_request_tokens,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "memory": self.memory,
            "reasons": self.reasons,
            "decisions": dict(self.decisions),
            "fits_well": self.fits_well,
            "warnings": list(self.warnings),
            "alternatives": list(self.alternatives),
        }


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


def _layout(f: ModelFacts, hw: Hardware, tp: int, pp: int, nodes: int, dp: int, util: float, mnbt: int,
            mseqs: int, mml: int, avg: int, target: int, kv_b: Optional[int], weight_bytes: int) -> _Layout:
    weights = weight_bytes / (tp * pp) / GIB
    act = activation_gib(f, tp, mnbt, mseqs)
    kv = hw.gpu_memory_gib * util - weights - act
    bpt = f.kv_bytes_per_token(tp, pp, kv_b)
    tokens = int(kv * GIB // bpt) if kv > 0 else 0
    fits = tokens >= mml
    good = fits and tokens / max(1, avg) >= target
    return _Layout(tp, pp, nodes, dp, weights, act, kv, bpt, tokens, fits, good)


def _pow2_up(x: float) -> int:
    return 1 if x <= 1 else 2 ** math.ceil(math.log2(x))


def _tp_candidates(f: ModelFacts, gpus: int) -> List[int]:
    out, t = [], 1
    while t <= gpus:
        if gpus % t == 0 and f.num_attention_heads % t == 0:
            out.append(t)
        t *= 2
    return out or [1]


# ---------------------------------------------------------------------------

def make_plan(facts: ModelFacts, hardware: Hardware, workload: Workload, vllm_version: str,
              user_args: Sequence[str] = (), *, served_model_name: Optional[str] = None,
              host: Optional[str] = None, port: Optional[int] = None, model_arg: Optional[str] = None,
              model_flag: str = "", allow_unknown_flags: bool = False) -> Plan:
    """Plan TP/PP/DP and the vLLM flags; see the module docstring for the rules."""
    version = parse_version(vllm_version)
    user = check_user_args(list(user_args), vllm_version, allow_unknown=allow_unknown_flags)
    u: Dict[str, List[str]] = {name: vals for name, vals in user}

    def user_int(flag: str) -> Optional[int]:
        if flag not in u:
            return None
        try:
            val = int(u[flag][0])
        except (ValueError, IndexError):
            raise PlanError(f"vLLM flag {flag} needs an integer, got {' '.join(u[flag])!r}") from None
        if val < 1:
            raise PlanError(f"vLLM flag {flag} must be >= 1, got {val}")
        return val

    decisions: Dict[str, str] = {}
    warnings: List[str] = []
    kv_dtype = (u.get("--kv-cache-dtype") or [workload.kv_cache_dtype or ""])[0]
    kv_b = 1 if kv_dtype.startswith("fp8") else None
    weight_bytes = facts.weight_bytes
    user_quant = (u.get("--quantization") or [None])[0]
    if user_quant and user_quant in QUANT_BYTES_PER_PARAM and user_quant != (facts.quantization or ""):
        weight_bytes = int(facts.params * QUANT_BYTES_PER_PARAM[user_quant])

    # --- request shape and max model length --------------------------------------------
    native = facts.max_position_embeddings
    hint_len = (workload.prompt_len or 0) + (workload.output_len or 0)
    if user_int("--max-model-len"):
        mml, mml_reason = user_int("--max-model-len"), "set by you"
    elif workload.max_model_len:
        mml, mml_reason = int(workload.max_model_len), "set by you (--max-model-len)"
    elif hint_len:
        mml = min(native, max(2048, int(math.ceil(hint_len * 1.25 / 1024)) * 1024))
        mml_reason = (f"expected requests of {hint_len} tokens (prompt + output) plus 25% headroom, rounded to "
                      f"1024; the model supports {native}")
    elif native > DEFAULT_MAX_MODEL_LEN_CAP:
        mml = DEFAULT_MAX_MODEL_LEN_CAP
        mml_reason = (f"the model supports {native:,} tokens, but vLLM reserves KV cache for at least one "
                      f"full-length sequence and sizes its batching from it; {mml:,} keeps memory for "
                      f"concurrency (pass --max-model-len to change)")
    else:
        mml, mml_reason = native, f"the model's own context length ({native:,})"
    if mml > native:
        warnings.append(f"max model length {mml:,} exceeds the model's max_position_embeddings ({native:,}); "
                        f"vLLM refuses this unless rope scaling is configured")
    avg = min(mml, (workload.prompt_len or DEFAULT_PROMPT_LEN) + (workload.output_len or DEFAULT_OUTPUT_LEN))
    avg_reason = ("from your --prompt-len/--output-len" if hint_len else
                  f"assumed {DEFAULT_PROMPT_LEN} prompt + {DEFAULT_OUTPUT_LEN} output tokens (pass --prompt-len/--output-len)")

    if hardware.device == "cpu":
        return _cpu_plan(facts, hardware, workload, vllm_version, u, user, mml, mml_reason, native, avg, avg_reason,
                         kv_b, decisions, warnings, served_model_name, host, port, model_arg, model_flag)

    if hardware.gpus_per_node < 1 or hardware.gpu_memory_gib <= 0:
        raise PlanError("the hardware has no GPUs described (gpus_per_node / gpu_memory_gib); set them in the "
                        "profile or pass --gpus and --gpu-memory")

    # --- memory utilization, batch budget ----------------------------------------------
    util, util_reason = choose_gpu_memory_utilization(hardware.gpu_memory_gib)
    if "--gpu-memory-utilization" in u:
        try:
            util = float(u["--gpu-memory-utilization"][0])
        except ValueError:
            raise PlanError(f"--gpu-memory-utilization needs a number, got {u['--gpu-memory-utilization'][0]!r}") from None
        util_reason = "set by you"
    mseqs_cap = 1024
    mnbt = 16384 if hardware.gpu_memory_gib >= 70 else 8192
    if workload.prompt_len and workload.prompt_len > mnbt:
        mnbt = min(32768, _pow2_up(workload.prompt_len))
    if user_int("--max-num-batched-tokens"):
        mnbt = user_int("--max-num-batched-tokens")

    # --- layouts -------------------------------------------------------------------------
    gpus = hardware.gpus_per_node
    fixed_tp, fixed_pp, fixed_dp = user_int("--tensor-parallel-size"), user_int("--pipeline-parallel-size"), \
        user_int("--data-parallel-size")
    conc_total = workload.concurrency

    def target_for(dp: int) -> int:
        if conc_total:
            return max(1, math.ceil(conc_total / dp))
        return TARGET_SEQS_PER_REPLICA

    def one_node(tp: int) -> _Layout:
        pp = fixed_pp or 1
        dp = fixed_dp or max(1, gpus // (tp * pp))
        return _layout(facts, hardware, tp, pp, 1, dp, util, mnbt, mseqs_cap, mml, avg, target_for(dp), kv_b,
                       weight_bytes)

    def multi_node(nodes: int) -> Optional[_Layout]:
        tp = max(_tp_candidates(facts, gpus))
        if nodes > facts.num_layers:
            return None
        return _layout(facts, hardware, tp, nodes, nodes, 1, util, mnbt, mseqs_cap, mml, avg, target_for(1), kv_b,
                       weight_bytes)

    cands = [fixed_tp] if fixed_tp else _tp_candidates(facts, gpus)
    layouts = [one_node(t) for t in cands]
    pcie = hardware.interconnect == "pcie"
    chosen: Optional[_Layout] = None
    if fixed_tp:
        chosen = layouts[0]
        decisions["tensor_parallel_size"] = f"TP={fixed_tp} set by you"
    else:
        good = [lay for lay in layouts if lay.good]
        fitting = [lay for lay in layouts if lay.fits]
        if pcie and fitting:
            chosen = fitting[0]
        elif good:
            chosen = good[0]
        elif fitting:
            chosen = max(fitting, key=lambda lay: lay.tokens / max(1, avg) * lay.dp)
    fits_well = bool(chosen and chosen.good)

    # multi-node only when one node cannot hold the model
    alternatives: List[Dict[str, Any]] = []
    if chosen is None or not chosen.fits or (not fits_well and hardware.nodes > 1 and not fixed_tp):
        for n in range(2, max(hardware.nodes, 8) + 1):
            lay = multi_node(n)
            if lay and lay.fits:
                if n <= hardware.nodes and (chosen is None or not chosen.fits or lay.good):
                    chosen, fits_well = lay, lay.good
                    decisions["nodes"] = (f"one node of {hardware.describe()} cannot hold the model well; "
                                          f"{n} nodes with TP={lay.tp} inside a node and PP={n} across nodes")
                break
    if chosen is None or not chosen.fits or not fits_well:
        alternatives = _alternatives(facts, hardware, workload, util, mnbt, mseqs_cap, mml, avg, kv_b, chosen,
                                     weight_bytes, target_for)
    if chosen is None or not chosen.fits:
        best = max(layouts, key=lambda lay: lay.tokens)
        why = (f"at TP={best.tp} each GPU holds {best.weights_gib:.1f} GiB of weights + {best.act_gib:.1f} GiB of "
               f"activations, leaving {max(0.0, best.kv_gib):.1f} GiB = {best.tokens:,} KV tokens "
               f"(< max model length {mml:,})")
        alt = "; ".join(a["summary"] for a in alternatives) or "none found up to 8 nodes"
        raise PlanError(
            f"{facts.model} ({facts.weight_gib:.1f} GiB of weights) does not fit one node of "
            f"{hardware.describe()} with vLLM: {why}",
            hint=f"smallest layouts that fit: {alt}",
        )

    tp, pp, dp, nodes = chosen.tp, chosen.pp, chosen.dp, chosen.nodes
    if not fits_well:
        warnings.append(
            f"the model does not fit {'this layout' if nodes > 1 else 'one node'} well: the KV cache holds "
            f"{chosen.tokens:,} tokens per replica = {chosen.tokens / avg:.0f} requests of {avg} tokens "
            f"(target {target_for(dp)}); better layouts: "
            + ("; ".join(a["summary"] for a in alternatives) or "none found"))
    if tp * pp * dp > gpus * nodes:
        raise PlanError(f"TP={tp} x PP={pp} x DP={dp} = {tp * pp * dp} GPUs, but the job has {gpus * nodes} "
                        f"({nodes} node(s) of {gpus}); lower one of them")

    # --- decisions in words -----------------------------------------------------------------
    kv_per_tp1 = facts.kv_bytes_per_token(1, 1, kv_b)
    decisions.setdefault("tensor_parallel_size", _tp_reason(facts, hardware, chosen, layouts, pcie, avg, target_for))
    # data parallel mode
    dp_mode = "vllm" if dp > 1 else "none"
    if dp > 1 and not is_known("--data-parallel-size", vllm_version):
        dp_mode = "replicas"
    if fixed_dp:
        decisions["data_parallel_size"] = f"DP={dp} set by you"
    elif dp > 1:
        decisions["data_parallel_size"] = (
            f"{gpus} GPUs / TP={tp} = {dp} independent replicas: {dp}x the batch capacity with no inter-GPU traffic"
            + ("" if dp_mode == "vllm" else f"; vLLM {vllm_version} has no --data-parallel-size (added in 0.8.5), "
               f"so {dp} separate servers are needed (replicas mode)"))
    else:
        decisions["data_parallel_size"] = "one replica uses all the GPUs it needs"
    decisions.setdefault("nodes", "the model fits one node; PP across nodes only when one node cannot hold it")
    decisions["memory"] = (f"per GPU: {hardware.gpu_memory_gib:g} GiB x {util:.2f} = "
                           f"{hardware.gpu_memory_gib * util:.1f} GiB usable = {chosen.weights_gib:.1f} weights + "
                           f"{chosen.act_gib:.1f} activations (est.) + {chosen.kv_gib:.1f} KV cache")
    decisions["kv_cache"] = (f"{chosen.kv_bpt:,} bytes/token/GPU (2 x {math.ceil(facts.num_layers / pp)} layers x "
                             f"{max(1, facts.num_kv_heads // tp)} KV heads x {facts.head_dim} x "
                             f"{kv_b or min(facts.dtype_bytes, 2)} B)" if not facts.is_mla else
                             f"{chosen.kv_bpt:,} bytes/token/GPU (MLA)") + \
        f" -> {chosen.tokens:,} tokens per replica"
    decisions["request_shape"] = f"{avg} tokens per request on average, {avg_reason}"
    decisions["model"] = f"{facts.model}: {facts.weight_gib:.1f} GiB of weights ({facts.weight_source}); facts from {facts.source}"

    # --- batch limits -----------------------------------------------------------------------
    per_replica_cap = chosen.tokens / avg
    # Twice the number of average requests the KV cache holds (rounded up to a power of two):
    # requests vary in length and vLLM admits one only when KV blocks are free, so the limit
    # should let short requests fill the cache rather than cap the batch first.
    mseqs = max(64, min(mseqs_cap, _pow2_up(2 * per_replica_cap)))
    if conc_total:
        mseqs = max(mseqs, min(mseqs_cap, math.ceil(conc_total / dp / 16) * 16))
    mseqs_reason = (f"the KV cache holds {chosen.tokens:,} tokens per replica = ~{per_replica_cap:.0f} requests of "
                    f"{avg} tokens; requests vary in length and vLLM admits one only when KV blocks are free, so "
                    f"{mseqs} (2x that, to a power of two, at most {mseqs_cap}) lets the batch fill the cache "
                    f"instead of stopping at vLLM's default (256 on A100 / GPUs under 70 GiB)")
    if dp > 1:
        mseqs_reason += f"; per replica ({dp} replicas: {mseqs * dp} in total)"
    if user_int("--max-num-seqs"):
        mseqs = user_int("--max-num-seqs")
    mnbt = max(mnbt, mseqs)
    vllm_default = ("2048 on A100s and GPUs under 70 GiB" if hardware.gpu_memory_gib < 70 or "A100" in hardware.gpu_name
                    else "8192, or 16384 from 160 GiB in vLLM 0.33")
    mnbt_reason = (f"prefill chunk of {mnbt} tokens per step (vLLM's default: {vllm_default}): fewer steps "
                   f"for long prompts, so faster time to first token, at a bounded cost in activation memory "
                   f"(counted above)")
    if version < (0, 8, 0) and mnbt < mml:
        mnbt_reason += "; chunked prefill is enabled so that it may be smaller than the max model length"

    # --- args ---------------------------------------------------------------------------
    args: List[PlanArg] = []
    add = lambda flag, vals, why: args.append(PlanArg(flag, tuple(str(v) for v in vals), why))  # noqa: E731
    add("--tensor-parallel-size", [tp], decisions["tensor_parallel_size"])
    if pp > 1:
        add("--pipeline-parallel-size", [pp], decisions["nodes"])
        add("--distributed-executor-backend", ["ray"], "TP x PP across nodes runs on a Ray cluster spanning the "
            "job's nodes (vllm.md §8)")
    if dp > 1 and dp_mode == "vllm":
        add("--data-parallel-size", [dp], decisions["data_parallel_size"])
        if is_known("--api-server-count", vllm_version):
            add("--api-server-count", [1], "one API server keeps the per-engine stats lines in the log (vLLM 0.32+ "
                "defaults to one API server per DP rank and then logs no stats at all); one front end is "
                "plenty for a node")
    if mml != native:
        add("--max-model-len", [mml], mml_reason)
    add("--gpu-memory-utilization", [f"{util:.2f}"], util_reason)
    add("--max-num-seqs", [mseqs], mseqs_reason)
    add("--max-num-batched-tokens", [mnbt], mnbt_reason)
    if version < (0, 8, 0):
        add("--enable-chunked-prefill", [], "V0 engine: chunked prefill lets prefill and decode share a step and "
            "allows a batch budget smaller than the max model length")
    if pcie and tp > 2:
        add("--disable-custom-all-reduce", [], "custom all-reduce is not supported on more than two PCIe-only GPUs; "
            "vLLM disables it anyway and warns, this says so explicitly")
    if kv_dtype and "--kv-cache-dtype" not in u:
        add("--kv-cache-dtype", [kv_dtype], f"{kv_dtype} KV cache: half the bytes per token, twice the tokens")
    if version < (0, 10, 2) and is_known("--disable-log-requests", vllm_version):
        add("--disable-log-requests", [], f"vLLM {vllm_version} logs every request by default (not from 0.10.2 on); "
            "that floods the realtime log under load")
    return _finish(facts, hardware, vllm_version, args, u, user, decisions, warnings, served_model_name, host, port,
                   model_arg, model_flag, tp=tp, pp=pp, dp=dp, nodes=nodes, gpus_used=min(gpus, tp * pp * dp // nodes)
                   if nodes > 1 else tp * pp * dp, mml=mml, mseqs=mseqs, mnbt=mnbt, util=util, tokens=chosen.tokens,
                   avg=avg, bpt=chosen.kv_bpt, fits_well=fits_well, alternatives=alternatives, dp_mode=dp_mode,
                   memory={"gpu_memory_gib": hardware.gpu_memory_gib,
                           "usable_gib": round(hardware.gpu_memory_gib * util, 2),
                           "weights_per_gpu_gib": round(chosen.weights_gib, 2),
                           "activation_gib": round(chosen.act_gib, 2),
                           "kv_cache_per_gpu_gib": round(chosen.kv_gib, 2),
                           "kv_bytes_per_token_tp1": kv_per_tp1})


def _tp_reason(f: ModelFacts, hw: Hardware, ch: _Layout, layouts: List[_Layout], pcie: bool, avg: int,
               target_for: Any) -> str:
    if ch.nodes > 1:
        return (f"TP={ch.tp} inside each node ({hw.interconnect}); the model needs {ch.nodes} nodes, joined by "
                f"pipeline parallelism")
    head = (f"{f.weight_gib:.1f} GiB of weights; at TP={ch.tp} each GPU keeps {ch.kv_gib:.1f} GiB for KV cache = "
            f"{ch.tokens:,} tokens = {ch.tokens / avg:.0f} requests of {avg} tokens")
    if ch.tp == 1:
        return (f"TP=1: the whole model fits one GPU ({head}, target {target_for(ch.dp)}); tensor parallelism would "
                f"only add all-reduce traffic to every layer of every token")
    smaller = [lay for lay in layouts if lay.tp < ch.tp]
    why_not = "; ".join(
        f"TP={lay.tp} would leave {max(0.0, lay.kv_gib):.1f} GiB = {lay.tokens:,} tokens"
        + (" (less than one max-length sequence)" if not lay.fits else f" = {lay.tokens / avg:.0f} requests")
        for lay in smaller)
    extra = " over PCIe only because the model needs it" if pcie else ""
    return f"TP={ch.tp}{extra}: smallest TP that holds the model well ({head}); {why_not}"


def _alternatives(f: ModelFacts, hw: Hardware, wl: Workload, util: float, mnbt: int, mseqs: int, mml: int, avg: int,
                  kv_b: Optional[int], chosen: Optional[_Layout], weight_bytes: int, target_for: Any) -> List[Dict[str, Any]]:
    alts: List[Dict[str, Any]] = []
    tp_max = max(_tp_candidates(f, hw.gpus_per_node))
    for n in range(2, 9):
        if n > f.num_layers:
            break
        lay = _layout(f, hw, tp_max, n, n, 1, util, mnbt, mseqs, mml, avg, target_for(1), kv_b, weight_bytes)
        if lay.good or (lay.fits and n == 8):
            alts.append({"nodes": n, "tensor_parallel_size": tp_max, "pipeline_parallel_size": n,
                         "data_parallel_size": 1, "kv_cache_tokens": lay.tokens,
                         "summary": f"{n} nodes: TP={tp_max} PP={n} (pass --nodes {n}) -> {lay.tokens:,} KV tokens, "
                                    f"~{lay.tokens / avg:.0f} requests of {avg} tokens"})
            break
    if weight_bytes > f.params * 1.0 + 1:
        qbytes = int(f.params * 1.0)
        for tp in _tp_candidates(f, hw.gpus_per_node):
            dp = hw.gpus_per_node // tp
            lay = _layout(f, hw, tp, 1, 1, dp, util, mnbt, mseqs, mml, avg, target_for(dp), kv_b, qbytes)
            if lay.good:
                alts.append({"nodes": 1, "tensor_parallel_size": tp, "pipeline_parallel_size": 1,
                             "data_parallel_size": dp, "quantization": "fp8", "kv_cache_tokens": lay.tokens,
                             "summary": f"1 node with fp8 weights: TP={tp} DP={dp} (pass --quantization fp8, or "
                                        f"serve an fp8 checkpoint) -> {lay.tokens:,} KV tokens per replica"})
                break
    if chosen is None or not chosen.fits:
        best_tokens = 0
        for tp in _tp_candidates(f, hw.gpus_per_node):
            lay = _layout(f, hw, tp, 1, 1, 1, util, mnbt, mseqs, mml, avg, 1, kv_b, weight_bytes)
            best_tokens = max(best_tokens, lay.tokens)
        short = (best_tokens // 1024) * 1024
        if short >= 2048:
            alts.append({"nodes": 1, "max_model_len": short,
                         "summary": f"1 node with a shorter context: --max-model-len {short} "
                                    f"(KV cache for about one such sequence only)"})
    return alts


def _cpu_plan(facts: ModelFacts, hw: Hardware, wl: Workload, vllm_version: str, u: Dict[str, List[str]],
              user: List[Tuple[str, List[str]]], mml: int, mml_reason: str, native: int, avg: int, avg_reason: str,
              kv_b: Optional[int], decisions: Dict[str, str], warnings: List[str], served: Optional[str],
              host: Optional[str], port: Optional[int], model_arg: Optional[str], model_flag: str) -> Plan:
    bpt = facts.kv_bytes_per_token(1, 1, kv_b)
    tokens = int(hw.cpu_kvcache_gib * GIB // bpt)
    if tokens < mml:
        short = max(0, (tokens // 256) * 256)
        raise PlanError(
            f"{facts.model}: the CPU KV cache of {hw.cpu_kvcache_gib:g} GiB (VLLM_CPU_KVCACHE_SPACE) holds "
            f"{tokens:,} tokens at {bpt:,} bytes/token, less than the max model length {mml:,}",
            hint=f"raise env.VLLM_CPU_KVCACHE_SPACE in the profile or pass --max-model-len {short}" if short else
            "raise env.VLLM_CPU_KVCACHE_SPACE in the profile")
    decisions["tensor_parallel_size"] = "TP=1: the CPU backend runs one engine on this machine's cores; no GPUs"
    decisions["data_parallel_size"] = "DP=1: one CPU engine already uses every core; a second would halve each"
    decisions["nodes"] = "one machine"
    decisions["memory"] = (f"KV cache {hw.cpu_kvcache_gib:g} GiB from VLLM_CPU_KVCACHE_SPACE (vLLM's CPU backend "
                           f"ignores --gpu-memory-utilization for it)")
    decisions["kv_cache"] = f"{bpt:,} bytes/token -> {tokens:,} tokens"
    decisions["request_shape"] = f"{avg} tokens per request on average, {avg_reason}"
    decisions["model"] = f"{facts.model}: {facts.weight_gib:.2f} GiB of weights; facts from {facts.source}"
    cap = tokens / avg
    mseqs = max(16, min(256, _pow2_up(cap)))
    if u.get("--max-num-seqs"):
        mseqs = int(u["--max-num-seqs"][0])
    mnbt = max(2048, mseqs)
    args: List[PlanArg] = []
    args.append(PlanArg("--tensor-parallel-size", ("1",), decisions["tensor_parallel_size"]))
    if mml != native:
        args.append(PlanArg("--max-model-len", (str(mml),), mml_reason))
    args.append(PlanArg("--max-num-seqs", (str(mseqs),),
                        f"the KV cache holds {tokens:,} tokens = ~{cap:.0f} requests of {avg} tokens; capped at 256 "
                        f"on a CPU, where larger batches only queue for the same cores"))
    args.append(PlanArg("--max-num-batched-tokens", (str(mnbt),),
                        "vLLM's CPU default (2048) made explicit: a CPU is compute-bound, bigger prefill chunks "
                        "only stall running decodes longer"))
    return _finish(facts, hw, vllm_version, args, u, user, decisions, warnings, served, host, port, model_arg,
                   model_flag, tp=1, pp=1, dp=1, nodes=1, gpus_used=0, mml=mml, mseqs=mseqs, mnbt=mnbt, util=None,
                   tokens=tokens, avg=avg, bpt=bpt, fits_well=True, alternatives=[], dp_mode="none",
                   memory={"cpu_kvcache_gib": hw.cpu_kvcache_gib, "kv_bytes_per_token_tp1": bpt})


def _finish(facts: ModelFacts, hw: Hardware, vllm_version: str, args: List[PlanArg], u: Dict[str, List[str]],
            user: List[Tuple[str, List[str]]], decisions: Dict[str, str], warnings: List[str],
            served: Optional[str], host: Optional[str], port: Optional[int], model_arg: Optional[str],
            model_flag: str, **k: Any) -> Plan:
    # serving flags first, then the tuned ones
    serve: List[PlanArg] = []
    if served:
        serve.append(PlanArg("--served-model-name", (served,), "the name clients send as \"model\" (default: the alias)",
                             "serve"))
    if host:
        serve.append(PlanArg("--host", (host,), "listen address: all interfaces so the login node can reach the "
                             "compute node" if host == "0.0.0.0" else "listen address", "serve"))
    if port is not None:
        serve.append(PlanArg("--port", (str(port),), "requested port; the job moves up to the next free one at "
                             "start time", "serve"))
    merged = serve + args
    # user flags win: replace in place, or append
    for name, values in user:
        reason = "set by you (--vllm-arg)"
        if name == "--enforce-eager":
            reason = ("set by you: disables CUDA graphs and torch.compile, which costs 30-50% of decode speed on GPUs; "
                      "the planner never sets it")
            if hw.device == "cuda":
                warnings.append("--enforce-eager disables CUDA graphs: decode is typically 30-50% slower; "
                                "use it only for debugging")
        for i, a in enumerate(merged):
            if a.flag == name:
                merged[i] = PlanArg(name, tuple(values), f"{reason}; the planner suggested "
                                    f"{' '.join(a.values) or 'it'} because: {a.reason}", "user")
                break
        else:
            merged.append(PlanArg(name, tuple(values), reason, "user"))
    model = model_arg or facts.model
    model_args = (model_flag, model) if model_flag else (model,)
    return Plan(
        model=facts.model, vllm_version=vllm_version, device=hw.device,
        tensor_parallel_size=k["tp"], pipeline_parallel_size=k["pp"], data_parallel_size=k["dp"], nodes=k["nodes"],
        gpus_per_node=k["gpus_used"], max_model_len=k["mml"], max_num_seqs=k["mseqs"],
        max_num_batched_tokens=k["mnbt"], gpu_memory_utilization=k["util"], kv_cache_tokens=k["tokens"],
        max_concurrency=k["tokens"] / k["mml"] * k["dp"], expected_request_tokens=k["avg"],
        kv_bytes_per_token=k["bpt"], memory=k["memory"], args=tuple(merged), model_args=model_args,
        fits_well=k["fits_well"], warnings=tuple(warnings), alternatives=tuple(k["alternatives"]),
        data_parallel_mode=k["dp_mode"], decisions=decisions,
    )
