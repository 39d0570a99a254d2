"""Renderers for ``pbsvllm doctor``: terminal text, markdown, JSON.

Pure functions of a :class:`pbsvllm.doctor.Diagnosis`. The markdown report
follows the shape of a hand-written performance review: summary, current
configuration, issues by priority, recommended command, expected effect, how
to validate.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple

from pbsvllm.doctor import Capacity, Diagnosis, Finding

_MARK = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵", "info": "⚪"}


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "?"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if digits else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _counts(findings: List[Finding]) -> str:
    c: Dict[str, int] = {}
    for f in findings:
        c[f.severity] = c.get(f.severity, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in c.items()) or "none"


#: The capacity table: label, the figure of a Capacity, digits after the point.
_CAPACITY_ROWS: List[Tuple[str, Callable[[Capacity], Optional[float]], int]] = [
    ("replicas (data parallel)", lambda c: c.replicas, 0),
    ("KV-cache tokens per replica", lambda c: c.kv_cache_tokens_per_replica, 0),
    ("max model length", lambda c: c.max_model_len, 0),
    ("max concurrency at max length (server)", lambda c: c.max_concurrency_at_max_len, 1),
    ("requests of the observed size the KV cache holds (server)", lambda c: c.requests_at_observed_size, 0),
    ("max-num-seqs (server)", lambda c: c.max_num_seqs_total, 0),
]


def _capacity_rows(before: Optional[Capacity], after: Optional[Capacity]) -> List[List[str]]:
    def g(c: Optional[Capacity], pick: Callable[[Capacity], Optional[float]], digits: int) -> str:
        return _n(pick(c), digits) if c is not None else "?"

    return [[label, g(before, pick, digits), g(after, pick, digits)] for label, pick, digits in _CAPACITY_ROWS]


def _load_lines(d: Diagnosis) -> List[str]:
    ld = d.load
    if not ld.stats_lines:
        return ["no engine-stats lines in the log"]
    out = [
        f"{ld.stats_lines} stats lines from {ld.engines} engine(s), {ld.busy_lines} while busy",
        f"generation {_n(ld.mean_busy_generation_tokens_per_s_per_engine, 1)} tokens/s and prompt "
        f"{_n(ld.mean_busy_prompt_tokens_per_s_per_engine, 1)} tokens/s per engine (mean while busy)",
        f"running requests per engine: mean {_n(ld.mean_busy_running_per_engine, 1)}, peak "
        f"{_n(ld.peak_running_per_engine)}; waiting peak {_n(ld.peak_waiting_per_engine if ld.engines else None)}",
        f"KV cache usage: mean {_n(ld.mean_busy_kv_cache_usage_pct, 2)}%, peak "
        f"{_n(ld.peak_kv_cache_usage_pct, 2)}%",
    ]
    if ld.mean_busy_prefix_cache_hit_pct is not None:
        out.append(f"prefix-cache hit rate: {ld.mean_busy_prefix_cache_hit_pct:g}% (mean while busy)")
    if ld.context_tokens_per_request:
        out.append(f"context per running request: ~{ld.context_tokens_per_request:,} tokens "
                   f"(KV tokens in use / running requests)")
    if ld.preemptions:
        out.append(f"preemptions: {ld.preemptions}")
    return out


# ---------------------------------------------------------------------------


def render_json(d: Diagnosis) -> str:
    return json.dumps(d.to_json(), indent=2, default=str)


def render_text(d: Diagnosis) -> str:
    f = d.facts
    L: List[str] = []
    L.append(f"log        {d.log_path}  ({f.lines:,} lines)")
    L.append(f"server     {f.model or '?'}  vLLM {f.vllm_version or '?'} ({f.engine_version or '?'} engine)"
             + (f"  state: {f.phase}" if f.phase else ""))
    L.append(f"node       {d.node.describe()}")
    for k, v in d.node.sources.items():
        if v.startswith(("assumed", "unknown")):
            L.append(f"           {k}: {v}")
    for note in d.node.notes:
        L.append(f"           note: {note}")
    L.append("")
    L.append("current configuration")
    for flag, (val, src) in d.current.items():
        L.append(f"  {flag:<28} {val:<22} ({src})")
    L.append("")
    L.append("load")
    for line in _load_lines(d):
        L.append(f"  {line}")
    L.append("")
    L.append(f"findings: {_counts(d.findings)}")
    for i, fd in enumerate(d.findings, 1):
        L.append(f"\n{i}. [{fd.severity}] {fd.title}  ({fd.id})")
        for n, t in fd.evidence:
            L.append(f"     L{n}: {t[:220]}")
        L.append(f"   cost:   {fd.cost}")
        L.append(f"   change: {fd.recommendation}")
        for a in fd.assumptions:
            L.append(f"   assumption: {a}")
    if d.strengths:
        L.append("\nfine as is: " + "; ".join(d.strengths))
    rec = d.recommendation
    L.append("")
    if not rec.available:
        L.append(f"recommendation: not available: {rec.why_unavailable}")
        return "\n".join(L)
    L.append("recommended (the planner's flags for this model and node)")
    for c in rec.changes:
        cur = c.current or "-"
        if c.current_is_default:
            cur = f"default {c.current}" if c.current else "default"
        L.append(f"  {c.action:<7} {c.flag:<28} {cur:>12} -> {c.recommended or '(none)'}")
    L.append("")
    for label, b, a in _capacity_rows(rec.before, rec.after):
        L.append(f"  {label:<58} {b:>12} -> {a}")
    for note in rec.notes:
        L.append(f"  note: {note}")
    L.append("")
    L.append("apply with:")
    L.append("  " + rec.submit_command)
    return "\n".join(L)


def render_markdown(d: Diagnosis) -> str:
    f = d.facts
    rec = d.recommendation
    model = f.model or "?"
    L: List[str] = []
    L.append(f"# vLLM performance review: {model}")
    L.append("")
    L.append(f"_Generated by `pbsvllm doctor` from `{d.log_path}` ({f.lines:,} lines); vLLM "
             f"{f.vllm_version or '?'} ({f.engine_version or '?'} engine); node: {d.node.describe()}._")
    L.append("")
    L.append("## Summary")
    L.append("")
    if d.strengths:
        L.append("- ✅ **Fine as is**: " + "; ".join(d.strengths))
    crit = [x for x in d.findings if x.severity in ("critical", "high")]
    if crit:
        L.append("- ⚠️ **Main issues**: " + "; ".join(x.title for x in crit))
    elif d.findings:
        L.append("- **Issues**: " + "; ".join(x.title for x in d.findings))
    else:
        L.append("- No issues found in this log.")
    if rec.available and rec.before and rec.after:
        L.append(f"- 🎯 **Recommended layout**: TP={rec.plan['tensor_parallel_size'] if rec.plan else '?'}, "
                 f"DP={rec.after.replicas} (now TP={f.tensor_parallel_size or 1}, DP={rec.before.replicas}); "
                 "see the command below")
    assumed = [f"{k}: {v}" for k, v in d.node.sources.items() if v.startswith(("assumed", "unknown"))]
    if assumed:
        L.append("- **Assumptions**: " + "; ".join(assumed))
    for note in d.node.notes:
        L.append(f"- **Note**: {note}")
    L.append("")
    L.append("## Current configuration")
    L.append("")
    L.append("| flag | value | from |")
    L.append("|---|---|---|")
    for flag, (val, src) in d.current.items():
        L.append(f"| `{flag}` | {val} | {src} |")
    L.append("")
    L.append("**Load seen in the engine-stats lines:**")
    L.append("")
    for line in _load_lines(d):
        L.append(f"- {line}")
    L.append("")
    L.append("## Issues by priority")
    L.append("")
    if not d.findings:
        L.append("None.")
    for i, fd in enumerate(d.findings, 1):
        L.append(f"### {_MARK.get(fd.severity, '')} {i}. {fd.title} ({fd.severity}, `{fd.id}`)")
        L.append("")
        if fd.evidence:
            L.append("**Evidence** (line numbers in the log):")
            L.append("")
            L.append("```")
            for n, t in fd.evidence:
                L.append(f"{n}: {t if len(t) <= 400 else t[:400] + ' …'}")
            L.append("```")
            L.append("")
        L.append(f"**What it costs**: {fd.cost}")
        L.append("")
        L.append(f"**Change**: {fd.recommendation}")
        L.append("")
        for a in fd.assumptions:
            L.append(f"_Assumption_: {a}")
            L.append("")
    L.append("## Recommended command")
    L.append("")
    if not rec.available:
        L.append(f"Not available: {rec.why_unavailable}")
        L.append("")
    else:
        L.append("The same planner `pbsvllm submit` uses, for this model and node:")
        L.append("")
        L.append("```bash")
        L.append(rec.submit_command)
        L.append("```")
        L.append("")
        L.append("It runs:")
        L.append("")
        L.append("```bash")
        import shlex

        L.append("vllm serve " + " ".join(shlex.quote(a) for a in rec.vllm_args))
        L.append("```")
        L.append("")
        L.append("| change | flag | now | recommended | why |")
        L.append("|---|---|---|---|---|")
        for c in rec.changes:
            cur = c.current or "–"
            if c.current_is_default:
                cur = f"default ({c.current})" if c.current else "default"
            reason = c.reason.replace("|", "\\|")
            L.append(f"| {c.action} | `{c.flag}` | {cur} | {c.recommended or '–'} | {reason} |")
        L.append("")
        for note in rec.notes:
            L.append(f"- {note}")
        if rec.notes:
            L.append("")
        L.append("## Expected effect")
        L.append("")
        L.append("| | now (from the log) | recommended (planner) |")
        L.append("|---|---|---|")
        for label, b, a in _capacity_rows(rec.before, rec.after):
            L.append(f"| {label} | {b} | {a} |")
        L.append("")
        L.append("Throughput follows the number of requests the server actually runs at once: the rows above are "
                 "capacity, which the clients must use (see the KV-cache finding, if any).")
        L.append("")
    L.append("## How to validate")
    L.append("")
    alias = "ALIAS"
    if rec.available and "--alias" in rec.submit_argv:
        alias = rec.submit_argv[rec.submit_argv.index("--alias") + 1]
    new = f"{alias}-new"
    L.append(f"1. Start the recommended server next to the current one: the command above with `--alias {new} "
             "--wait` (it waits until a real completion succeeds and registers the endpoint).")
    L.append(f"2. Compare them on the same requests: `pbsvllm bench {alias} --vs {new} -c 8,64,256` (or time your "
             "own evaluation run against each).")
    L.append(f"3. Watch `pbsvllm logs {new} --stats`: KV-cache usage should rise with the client's concurrency; "
             f"`pbsvllm doctor {new}` should show no critical or high findings.")
    L.append(f"4. Move the endpoint with no failed requests: `pbsvllm swap-endpoint {alias} --to {new} --cancel-old` "
             "(see docs/lifecycle.md).")
    L.append("")
    return "\n".join(L)


def render(d: Diagnosis, fmt: str) -> str:
    if fmt == "json":
        return render_json(d)
    if fmt == "markdown":
        return render_markdown(d)
    return render_text(d)
