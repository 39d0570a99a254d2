"""The diagnosis: every finding rule run over the log's facts, most severe
first, with the recommendation and what the server does well."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from pbsvllm.doctor.findings import RULES, Inputs
from pbsvllm.doctor.model import SEVERITIES, Diagnosis, Finding, LoadSummary, NodeShape, Recommendation
from pbsvllm.doctor.node import current_configuration, load_summary
from pbsvllm.doctor.recommend import PlanRequest, recommendation_from_plan
from pbsvllm.vllmlog import LogFacts

if TYPE_CHECKING:
    from pbsvllm.plan import Plan


def diagnose(
    facts: LogFacts,
    node: NodeShape,
    *,
    plan: Optional[Plan] = None,
    plan_req: Optional[PlanRequest] = None,
    plan_error: str = "",
    log_path: str = "",
) -> Diagnosis:
    """All findings (each rule of :data:`pbsvllm.doctor.findings.RULES`), most
    severe first, and the recommendation."""
    current = current_configuration(facts, node)
    load = load_summary(facts)
    inputs = Inputs(facts, node, plan, current, load)
    findings: List[Finding] = []
    for rule in RULES:
        findings.extend(rule(inputs))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: order.get(f.severity, 9))
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


def strengths(facts: LogFacts, load: LoadSummary) -> List[str]:
    out = []
    pref = load.mean_busy_prefix_cache_hit_pct
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
