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

Modules: :mod:`~pbsvllm.doctor.model` (the data and its JSON),
:mod:`~pbsvllm.doctor.node` (vLLM's defaults, the node, the current flags,
the load), :mod:`~pbsvllm.doctor.recommend` (the planner's inputs and the
plan as a diff), :mod:`~pbsvllm.doctor.findings` (one function per
finding, listed in ``RULES``), :mod:`~pbsvllm.doctor.diagnosis`.

Nothing here reads files or runs commands; the rules are written out in
docs/doctor.md, whose table of findings names each finding's function.
"""

from __future__ import annotations

from pbsvllm.doctor.diagnosis import diagnose, recorded_plan_note, strengths
from pbsvllm.doctor.findings import RULES, Inputs
from pbsvllm.doctor.model import (
    CAP_BINDS,
    KV_FULL_PCT,
    KV_IDLE_PCT,
    MAX_LEN_SLACK,
    MIN_BUSY_LINES,
    PREFIX_LOW_PCT,
    SEVERITIES,
    Capacity,
    Diagnosis,
    Finding,
    FlagChange,
    LoadSummary,
    NodeShape,
    Recommendation,
)
from pbsvllm.doctor.node import (
    COMMON_GPU_GIB,
    current_configuration,
    estimate_gpu_memory,
    load_summary,
    node_shape,
    vllm_defaults,
)
from pbsvllm.doctor.recommend import (
    PlanRequest,
    carried_args,
    deprecated_in_log,
    plan_request,
    recommendation_from_plan,
)

__all__ = [
    "CAP_BINDS",
    "COMMON_GPU_GIB",
    "KV_FULL_PCT",
    "KV_IDLE_PCT",
    "MAX_LEN_SLACK",
    "MIN_BUSY_LINES",
    "PREFIX_LOW_PCT",
    "RULES",
    "SEVERITIES",
    "Capacity",
    "Diagnosis",
    "Finding",
    "FlagChange",
    "Inputs",
    "LoadSummary",
    "NodeShape",
    "PlanRequest",
    "Recommendation",
    "carried_args",
    "current_configuration",
    "deprecated_in_log",
    "diagnose",
    "estimate_gpu_memory",
    "load_summary",
    "node_shape",
    "plan_request",
    "recommendation_from_plan",
    "recorded_plan_note",
    "strengths",
    "vllm_defaults",
]
