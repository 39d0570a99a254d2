"""The planner: model facts + hardware + workload + vLLM version -> a Plan.

Pure: no I/O, no heavy imports (``doctor`` imports it). :func:`make_plan`
runs small named rules in order; docs/planner.md explains each one and names
its function here:

========================  ===========================================================
rule (docs/planner.md)    function
========================  ===========================================================
model name                :func:`rule_model_name`
weights                   :func:`rule_weights` (``--quantization`` of a 16-bit model)
KV-cache dtype            :func:`rule_kv_cache_dtype`
max model length          :func:`rule_max_model_len`
request shape             :func:`rule_request_shape`
CPU                       :func:`rule_cpu`
memory utilization        :func:`rule_gpu_memory_utilization`
batch budget              :func:`rule_batch_budget`
smallest TP               :func:`rule_smallest_tp` (+ :func:`rule_pcie`)
expert parallel (MoE)     :func:`rule_expert_parallel`
pipeline across nodes     :func:`rule_pipeline_across_nodes`
data parallel             :func:`rule_data_parallel`
batch limits              :func:`rule_batch_limits`
version-aware flags       :func:`rule_version_flags`
your flags win, no eager  :func:`rule_user_flags`
========================  ===========================================================
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from pbsvllm.errors import PlanError
from pbsvllm.flags import check_user_args, parse_version
from pbsvllm.modelfacts import ModelFacts
from pbsvllm.planrules import (
    Inputs,
    Shape,
    _alternatives,
    _kv_words,
    _target,
    _tp_reason,
    activation_gib,
    choose_gpu_memory_utilization,
    rule_api_server_count,
    rule_batch_budget,
    rule_batch_limits,
    rule_cpu,
    rule_data_parallel,
    rule_expert_parallel,
    rule_gpu_memory_utilization,
    rule_kv_cache_dtype,
    rule_max_model_len,
    rule_model_name,
    rule_pcie,
    rule_pipeline_across_nodes,
    rule_request_shape,
    rule_smallest_tp,
    rule_user_flags,
    rule_version_flags,
    rule_weights,
)
from pbsvllm.plantypes import (
    DEFAULT_MAX_MODEL_LEN_CAP,
    GIB,
    KV_CACHE_DTYPES,
    TARGET_SEQS_PER_REPLICA,
    Hardware,
    Plan,
    PlanArg,
    Workload,
)

__all__ = ["Hardware", "Workload", "Plan", "PlanArg", "make_plan", "activation_gib", "choose_gpu_memory_utilization",
           "DEFAULT_MAX_MODEL_LEN_CAP", "KV_CACHE_DTYPES", "TARGET_SEQS_PER_REPLICA", "rule_pcie"]


def make_plan(facts: ModelFacts, hardware: Hardware, workload: Workload, vllm_version: str,
              user_args: Sequence[str] = (), *, served_model_name: Optional[str] = None,
              host: Optional[str] = None, port: Optional[int] = None, model_arg: Optional[str] = None,
              model_flag: str = "", allow_unknown_flags: bool = False) -> Plan:
    """Plan TP/PP/DP (and expert parallelism) and the vLLM flags by the rules above."""
    parse_version(vllm_version)
    workload.validate()
    user = check_user_args(list(user_args), vllm_version, allow_unknown=allow_unknown_flags)
    inp = Inputs(facts, hardware, workload, vllm_version, tuple((n, tuple(v)) for n, v in user), served_model_name,
                 host, port, model_arg, model_flag)
    rule_model_name(inp)
    decisions: Dict[str, str] = {}
    warnings: List[str] = []
    weight_bytes, exp_bytes = rule_weights(inp)
    kv_dtype, kv_b = rule_kv_cache_dtype(inp)
    mml, mml_reason, native = rule_max_model_len(inp, warnings)
    avg, avg_reason = rule_request_shape(inp, mml)
    sh = Shape(mml, mml_reason, native, avg, avg_reason, kv_dtype, kv_b, weight_bytes, exp_bytes)
    decisions["request_shape"] = f"{avg} tokens per request on average, {avg_reason}"
    if hardware.device == "cpu":
        hardware.validate()
        return rule_cpu(inp, sh, decisions, warnings)
    if hardware.gpus_per_node < 1 or hardware.gpu_memory_gib <= 0:
        raise PlanError("the hardware has no GPUs described (gpus_per_node / gpu_memory_gib); set them in the "
                        "profile or pass --gpus and --gpu-memory")
    hardware.validate()
    util, util_reason = rule_gpu_memory_utilization(inp)
    b = rule_batch_budget(inp, util, util_reason)

    chosen, layouts = rule_smallest_tp(inp, sh, b)
    fits_well = bool(chosen and chosen.good)
    chosen, fits_well = rule_pipeline_across_nodes(inp, sh, b, chosen, fits_well, decisions)
    alternatives: List[Dict[str, Any]] = []
    if chosen is None or not chosen.fits or not fits_well:
        alternatives = _alternatives(inp, sh, b, chosen)
    if chosen is None or not chosen.fits:
        best = max(layouts, key=lambda lay: (lay.tokens, lay.tp))
        why = (f"at TP={best.tp} each GPU holds {best.weights_gib:.1f} GiB of weights + {best.act_gib:.1f} GiB of "
               f"activations, leaving {max(0.0, best.kv_gib):.1f} GiB = {best.tokens:,} KV tokens "
               f"(< max model length {mml:,})")
        alt = "; ".join(a["summary"] for a in alternatives) or "none found up to 8 nodes"
        raise PlanError(
            f"{facts.model} ({weight_bytes / GIB:.1f} GiB of weights) does not fit one node of "
            f"{hardware.describe()} with vLLM: {why}",
            hint=f"smallest layouts that fit: {alt}",
        )
    tp, pp, dp, nodes = chosen.tp, chosen.pp, chosen.dp, chosen.nodes
    gpus = hardware.gpus_per_node
    use_ep, ep_reason = rule_expert_parallel(inp, sh, chosen)
    if ep_reason:
        decisions["expert_parallel"] = ep_reason
    if not fits_well:
        warnings.append(
            f"the model does not fit {'this layout' if nodes > 1 else 'one node'} well: the KV cache holds "
            f"{chosen.tokens:,} tokens per replica = {chosen.requests:.0f} requests of {avg} tokens "
            f"(target {_target(inp, dp)}); better layouts: "
            + ("; ".join(a["summary"] for a in alternatives) or "none found"))
    if tp * pp * dp > gpus * nodes:
        raise PlanError(f"TP={tp} x PP={pp} x DP={dp} = {tp * pp * dp} GPUs, but the job has {gpus * nodes} "
                        f"({nodes} node(s) of {gpus}); lower one of them")

    # --- decisions in words -----------------------------------------------------------------
    if inp.user_int("--tensor-parallel-size"):
        decisions["tensor_parallel_size"] = f"TP={tp} set by you"
    decisions.setdefault("tensor_parallel_size", _tp_reason(inp, sh, chosen, layouts))
    dp_mode = rule_data_parallel(inp, chosen, decisions)
    decisions.setdefault("nodes", "the model fits one node; PP across nodes only when one node cannot hold it")
    decisions["memory"] = (f"per GPU: {hardware.gpu_memory_gib:g} GiB x {util:.2f} = "
                           f"{hardware.gpu_memory_gib * util:.1f} GiB usable = {chosen.weights_gib:.1f} weights + "
                           f"{chosen.act_gib:.1f} activations (est.) + {chosen.kv_gib:.1f} KV cache")
    decisions["kv_cache"] = _kv_words(facts, chosen, kv_b)
    decisions["model"] = (f"{facts.model}: {weight_bytes / GIB:.1f} GiB of weights ({facts.weight_source}); "
                          f"facts from {facts.source}")
    mseqs, mseqs_reason, mnbt, mnbt_reason = rule_batch_limits(inp, sh, b, chosen)

    # --- args ---------------------------------------------------------------------------
    args: List[PlanArg] = [PlanArg("--tensor-parallel-size", (str(tp),), decisions["tensor_parallel_size"])]
    if pp > 1:
        args.append(PlanArg("--pipeline-parallel-size", (str(pp),), decisions["nodes"]))
        args.append(PlanArg("--distributed-executor-backend", ("ray",), "TP x PP across nodes runs on a Ray cluster "
                            "spanning the job's nodes (docs/multinode.md)"))
    if dp > 1 and dp_mode == "vllm":
        args.append(PlanArg("--data-parallel-size", (str(dp),), decisions["data_parallel_size"]))
        api = rule_api_server_count(inp, chosen, dp_mode)
        if api:
            args.append(api)
    if use_ep:
        args.append(PlanArg("--enable-expert-parallel", (), decisions["expert_parallel"]))
    if mml != native:
        args.append(PlanArg("--max-model-len", (str(mml),), mml_reason))
    args.append(PlanArg("--gpu-memory-utilization", (f"{util:.2f}",), util_reason))
    args.append(PlanArg("--max-num-seqs", (str(mseqs),), mseqs_reason))
    args.append(PlanArg("--max-num-batched-tokens", (str(mnbt),), mnbt_reason))
    rule_version_flags(inp, sh, chosen, args)
    conc = chosen.tokens / mml * dp
    memory = {"gpu_memory_gib": hardware.gpu_memory_gib, "usable_gib": round(hardware.gpu_memory_gib * util, 2),
              "weights_per_gpu_gib": round(chosen.weights_gib, 2), "activation_gib": round(chosen.act_gib, 2),
              "kv_cache_per_gpu_gib": round(chosen.kv_gib, 2),
              "kv_bytes_per_token_tp1": facts.kv_bytes_per_token(1, 1, kv_b)}
    gpus_used = min(gpus, tp * pp * dp // nodes) if nodes > 1 else tp * pp * dp
    return rule_user_flags(inp, args, decisions, warnings, tp=tp, pp=pp, dp=dp, nodes=nodes, gpus_used=gpus_used,
                           mml=mml, mseqs=mseqs, mnbt=mnbt, util=util, tokens=chosen.tokens, avg=avg,
                           bpt=chosen.kv_bpt, fits_well=fits_well, alternatives=alternatives, dp_mode=dp_mode,
                           memory=memory, concurrency=conc, ep=use_ep or "--enable-expert-parallel" in inp.u,
                           kv_layers=facts.kv_detail(tp, pp, kv_b, mml, mnbt))


