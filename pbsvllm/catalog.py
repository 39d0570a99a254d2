"""The built-in model catalog as users browse it (``pbsvllm models``): pure, data in, data out.

Each row: the model's family and architecture numbers, its real checkpoint size
and where that figure comes from, the weight estimate from its config.json alone,
the KV-cache bytes per token, and what :func:`pbsvllm.plan.make_plan` would do
on a given hardware (or why it cannot), with the plan's reasons in the detail
view. The catalog itself is data: ``pbsvllm/data/catalog.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from pbsvllm.errors import ModelFactsError, PbsvllmError
from pbsvllm.modelfacts import ModelFacts, catalog_lookup, facts_from_catalog_entry, load_catalog
from pbsvllm.plan import Hardware, Plan, Workload, make_plan

GIB = 2**30


@dataclass(frozen=True)
class CatalogRow:
    name: str
    family: str
    released: str
    facts: ModelFacts
    checkpoint_bytes: Optional[int]
    checkpoint_source: str
    source: str
    notes: str
    plan: Optional[Plan]
    plan_error: str
    plan_hint: str = ""

    @property
    def estimate_error(self) -> Optional[float]:
        if not self.checkpoint_bytes:
            return None
        return self.facts.estimated_weight_bytes / self.checkpoint_bytes - 1

    def plan_summary(self) -> str:
        p = self.plan
        if p is None:
            alt = self.plan_hint.replace("smallest layouts that fit: ", "", 1).split("; ")[0]
            if "does not fit one node" in self.plan_error:
                return "does not fit one node" + (f"; {alt}" if alt else "")
            return "no plan: " + self.plan_error
        layout = f"TP={p.tensor_parallel_size}"
        if p.pipeline_parallel_size > 1:
            layout += f" PP={p.pipeline_parallel_size}"
        if p.data_parallel_size > 1:
            layout += f" DP={p.data_parallel_size}"
        if p.expert_parallel:
            layout += " EP"
        nodes = f" on {p.nodes} nodes" if p.nodes > 1 else ""
        well = "" if p.fits_well else " (not well)"
        return f"{layout}{nodes}: {p.kv_cache_tokens:,} KV tokens/replica{well}"

    def to_json(self) -> Dict[str, Any]:
        f = self.facts
        return {
            "model": self.name, "family": self.family, "released": self.released,
            "architecture": f.architecture, "model_type": f.model_type,
            "num_layers": f.num_layers, "hidden_size": f.hidden_size, "num_attention_heads": f.num_attention_heads,
            "num_kv_heads": f.num_kv_heads, "head_dim": f.head_dim, "vocab_size": f.vocab_size,
            "max_position_embeddings": f.max_position_embeddings, "dtype": f.dtype,
            "quantization": f.quant_scheme.to_json() if f.quant_scheme else None,
            "moe": f.moe.to_json() if f.moe else None,
            "kv_cache_layers": [t.to_json() for t in f.kv_types],
            "kv_bytes_per_token_tp1": f.kv_bytes_per_token(1),
            "parameters": f.param_groups.to_json() if f.param_groups else None,
            "estimated_weight_bytes": f.estimated_weight_bytes,
            "checkpoint_bytes": self.checkpoint_bytes, "checkpoint_source": self.checkpoint_source,
            "estimate_error": None if self.estimate_error is None else round(self.estimate_error, 4),
            "source": self.source, "notes": self.notes,
            "plan": self.plan.to_json() if self.plan else None, "plan_error": self.plan_error or None,
            "plan_hint": self.plan_hint or None,
            "plan_summary": self.plan_summary(),
        }


def _row(name: str, entry: Mapping[str, Any], hw: Hardware, version: str, workload: Workload) -> CatalogRow:
    facts = facts_from_catalog_entry(name, name, entry)
    plan: Optional[Plan] = None
    err = hint = ""
    try:
        plan = make_plan(facts, hw, workload, version)
    except PbsvllmError as exc:
        err, hint = exc.message, exc.hint
    ck = entry.get("checkpoint_bytes")
    return CatalogRow(name, str(entry.get("family", "")), str(entry.get("released", "")), facts,
                      ck if isinstance(ck, int) else None, str(entry.get("checkpoint_source", "")),
                      str(entry.get("source", "")), str(entry.get("notes", "")), plan, err, hint)


def catalog_rows(hw: Hardware, version: str, workload: Optional[Workload] = None, family: Optional[str] = None,
                 catalog: Optional[Mapping[str, Any]] = None) -> List[CatalogRow]:
    """Every catalog model (optionally of one family: a substring of its family label)."""
    cat = catalog if catalog is not None else load_catalog()
    rows = []
    for name, entry in cat.items():
        if family and family.lower() not in str(entry.get("family", "")).lower():
            continue
        rows.append(_row(name, entry, hw, version, workload or Workload()))
    return rows


def catalog_row(name: str, hw: Hardware, version: str, workload: Optional[Workload] = None,
                catalog: Optional[Mapping[str, Any]] = None) -> CatalogRow:
    cat = catalog if catalog is not None else load_catalog()
    hit = catalog_lookup(name, cat)
    if hit is None:
        low = name.lower()
        close = [n for n in cat if low in n.lower()]
        raise ModelFactsError(f"{name!r} is not in the built-in catalog",
                              hint=("did you mean " + ", ".join(close[:5]) + "?") if close else
                              "`pbsvllm models` lists it")
    return _row(hit[0], hit[1], hw, version, workload or Workload())


def format_table(rows: List[CatalogRow], hardware_text: str) -> str:
    head = ("model", "family", "params", "checkpoint", "estimate", "KV B/token", f"plan on {hardware_text}")
    body = []
    for r in rows:
        f = r.facts
        ck = f"{r.checkpoint_bytes / GIB:.1f} GiB" if r.checkpoint_bytes else "?"
        err = r.estimate_error
        est = f"{f.estimated_weight_bytes / GIB:.1f} GiB" + (f" ({err:+.1%})" if err is not None else "")
        params = f.param_groups.total if f.param_groups else f.params
        body.append((r.name, r.family, f"{params / 1e9:.1f}B", ck, est, f"{f.kv_bytes_per_token(1):,}",
                     r.plan_summary()))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in [head, *body]]
    lines.append(f"\n{len(rows)} models. `pbsvllm models NAME` shows a model's numbers, their sources and the plan's "
                 f"reasons; the estimate is from config.json alone (what `plan` uses before a download).")
    return "\n".join(lines)


def format_detail(r: CatalogRow) -> str:
    f = r.facts
    lines = [f"{r.name}  ({r.family}, released {r.released})",
             f"architecture  {f.architecture} ({f.model_type}): {f.num_layers} layers, hidden {f.hidden_size:,}, "
             f"{f.num_attention_heads} heads / {f.num_kv_heads} KV heads x {f.head_dim}, vocab {f.vocab_size:,}, "
             f"context {f.max_position_embeddings:,}, {f.dtype}"]
    if f.moe:
        m = f.moe
        shared = f", shared {m.shared_intermediate}" if m.shared_intermediate else ""
        lines.append(f"MoE           {m.experts} experts of {m.expert_intermediate} "
                     f"(top-{m.experts_per_token}){shared} "
                     f"in {m.moe_layers} layers, {m.dense_layers} dense; experts {f.expert_bytes / GIB:.1f} GiB")
    if f.is_mla:
        lines.append(f"MLA           kv_lora_rank {f.kv_lora_rank} + qk_rope_head_dim {f.qk_rope_head_dim} per token "
                     f"and layer (no separate V, not split by TP)")
    if f.quant_scheme:
        lines.append(f"quantization  {f.quant_scheme.description}")
    kv = ", ".join(f"{t.layers} {t.kind.replace('_', ' ')}" + (f" (window {t.window})" if t.window else "")
                   + (f" ({t.mixer}, fixed state)" if t.mixer else "") for t in f.kv_types)
    lines.append(f"KV cache      {kv}; {f.kv_bytes_per_token(1):,} bytes/token at TP=1 (all attention layers)")
    params = f.param_groups.total if f.param_groups else f.params
    est = f"{f.estimated_weight_bytes / GIB:.2f} GiB ({params / 1e9:.2f}B parameters)"
    lines.append(f"weights       estimate {est} from config.json alone" +
                 (f"; checkpoint {r.checkpoint_bytes / GIB:.2f} GiB ({r.estimate_error:+.1%})"
                  if r.checkpoint_bytes and r.estimate_error is not None else "; checkpoint size not confirmed"))
    if r.checkpoint_source:
        lines.append(f"  checkpoint  {r.checkpoint_source}")
    lines.append(f"  numbers     {r.source}")
    if r.notes:
        lines.append(f"  note        {r.notes}")
    return "\n".join(lines)
