"""The recommendation: the planner's inputs built from the log (what
``pbsvllm submit`` would get), and the plan as a diff against the log with
capacity before and after."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pbsvllm.doctor.model import Capacity, FlagChange, LoadSummary, NodeShape, Recommendation
from pbsvllm.doctor.node import _NOT_CARRIED, _fmt, load_summary
from pbsvllm.vllmlog import LogFacts

if TYPE_CHECKING:
    from pbsvllm.plan import Plan

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
    if load.peak_waiting_per_engine > 0 or load.preemptions > 0:
        demand = sum((s.max_running.stats.running if s.max_running else 0) +
                     (s.max_waiting.stats.waiting if s.max_waiting else 0) for s in facts.stats.values())
        if demand > 0:
            options["concurrency"] = demand
            argv += ["--concurrency", str(demand)]
            ctx = load.context_tokens_per_request
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
    facts: LogFacts, plan: Plan, req: PlanRequest, current: Dict[str, Tuple[str, str]], load: LoadSummary
) -> Recommendation:
    """The plan as a diff against the log, with capacity before and after."""
    rec = Recommendation(available=True, plan=plan.to_json(), submit_argv=list(req.submit_argv),
                         vllm_args=list(plan.vllm_args), notes=list(req.notes))
    planned = {a.flag: a for a in plan.args}
    skip = {"--served-model-name", "--host", "--port"}
    seen = set()
    for flag, (val, _where) in current.items():
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
    ctx = load.context_tokens_per_request
    rec.before = Capacity(
        replicas=dp_before,
        kv_cache_tokens_per_replica=facts.kv_cache_tokens,
        max_model_len=facts.max_model_len,
        max_concurrency_at_max_len=(facts.max_concurrency * dp_before) if facts.max_concurrency else None,
        requests_at_observed_size=(
            (facts.kv_cache_tokens * dp_before / ctx) if (facts.kv_cache_tokens and ctx) else None
        ),
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
    out: List[Dict[str, Any]] = []
    for d in deprecations(names, facts.vllm_version):
        out.append({**d, "value": values.get(d["flag"])})
    return out
