"""Model architecture facts, offline.

Where the facts come from, first match wins:

1. ``model`` is a local directory holding ``config.json``;
2. the local Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``): ``models--ORG--NAME/snapshots/<rev>/config.json``
   (the revision ``refs/main`` names, else the newest snapshot);
3. the built-in catalog ``pbsvllm/data/catalog.toml`` (each entry notes its source).

For vision-language models the language model's numbers come from
``text_config``. Weight bytes: the safetensors index ``metadata.total_size``
when present, else the size of the ``*.safetensors`` files, else parameters x
dtype bytes. Overrides (``--params``, ``--dtype``, ...) win over all of these.

KV-cache bytes per token per GPU follow vLLM (vllm.md §9)::

    2 x L_stage x max(1, KVH // TP) x D x dtype_bytes     (MLA: L_stage x (kv_lora_rank + qk_rope_head_dim) x dtype_bytes)

Pure apart from reading those files; no network, no heavy imports.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from pbsvllm.errors import ModelFactsError

if sys.version_info >= (3, 11):  # pragma: no cover
    import tomllib as _toml
else:  # pragma: no cover
    import tomli as _toml

CATALOG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "catalog.toml")

# bytes per weight element as vLLM loads it ("auto": float32 checkpoints are served in 16 bits)
DTYPE_BYTES = {
    "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2, "float32": 2, "fp32": 2, "float": 2,
    "auto": 2, "fp8": 1, "float8": 1, "int8": 1,
}
QUANT_BYTES_PER_PARAM = {"fp8": 1.0, "int8": 1.0, "w8a8": 1.0, "awq": 0.56, "gptq": 0.56, "int4": 0.56,
                         "bitsandbytes": 0.56, "marlin": 0.56}


@dataclass(frozen=True)
class ModelFacts:
    model: str
    source: str                          # where the numbers came from
    architecture: str
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    dtype: str
    params: float                        # total parameters
    weight_bytes: int
    weight_source: str                   # safetensors index / files / params x dtype / override
    multimodal: bool = False
    quantization: Optional[str] = None
    kv_lora_rank: Optional[int] = None   # MLA (DeepSeek)
    qk_rope_head_dim: Optional[int] = None
    local_path: Optional[str] = None     # a directory vLLM can load, when found on disk
    verified: bool = False

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES.get(self.dtype.lower(), 2)

    @property
    def weight_gib(self) -> float:
        return self.weight_bytes / 2**30

    def kv_bytes_per_token(self, tp: int = 1, pp: int = 1, kv_dtype_bytes: Optional[int] = None) -> int:
        """KV-cache bytes per token on ONE GPU of a TP x PP replica (vllm.md §9)."""
        b = kv_dtype_bytes if kv_dtype_bytes else min(self.dtype_bytes, 2)
        layers = math.ceil(self.num_layers / max(1, pp))
        if self.is_mla:
            return layers * (int(self.kv_lora_rank or 0) + int(self.qk_rope_head_dim or 0)) * b
        return 2 * layers * max(1, self.num_kv_heads // max(1, tp)) * self.head_dim * b

    def to_json(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kv_bytes_per_token_tp1"] = self.kv_bytes_per_token(1)
        d["weight_gib"] = round(self.weight_gib, 2)
        return d


# ---------------------------------------------------------------------------

def parse_params(value: Any) -> float:
    """'7B', '70b', '1.5e9', '500M', 8030000000 -> a parameter count."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        return v * 1e9 if v < 1e5 else v  # '7' means 7B
    s = str(value).strip().lower().replace("_", "")
    m = re.match(r"^([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbt]?)$", s)
    if not m:
        raise ModelFactsError(f"--params must look like 7B, 1.5B, 500M or 7.6e9, got {value!r}")
    num = float(m.group(1))
    mult = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]
    if m.group(2) == "" and num < 1e5:
        mult = 1e9
    return num * mult


def hf_hub_cache(env: Mapping[str, str]) -> str:
    if env.get("HF_HUB_CACHE"):
        return os.path.expanduser(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return os.path.join(os.path.expanduser(env["HF_HOME"]), "hub")
    return os.path.expanduser("~/.cache/huggingface/hub")


def find_model_dir(model: str, env: Mapping[str, str]) -> Optional[str]:
    """A local directory with config.json for ``model``: the path itself or a hub snapshot."""
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        return path if os.path.isfile(os.path.join(path, "config.json")) else None
    if "/" not in model or model.startswith(("/", ".", "~")):
        return None
    repo_dir = os.path.join(hf_hub_cache(env), "models--" + model.replace("/", "--"))
    snaps = os.path.join(repo_dir, "snapshots")
    if not os.path.isdir(snaps):
        return None
    ref = os.path.join(repo_dir, "refs", "main")
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as fh:
            rev = fh.read().strip()
        cand = os.path.join(snaps, rev)
        if os.path.isfile(os.path.join(cand, "config.json")):
            return cand
    cands = [d for d in glob.glob(os.path.join(snaps, "*")) if os.path.isfile(os.path.join(d, "config.json"))]
    if not cands:
        return None
    return max(cands, key=lambda d: os.stat(os.path.join(d, "config.json")).st_mtime)


def _weights_on_disk(model_dir: str) -> Tuple[Optional[int], str]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as fh:
                total = json.load(fh).get("metadata", {}).get("total_size")
            if isinstance(total, (int, float)) and total > 0:
                return int(total), f"{index} metadata.total_size"
        except (OSError, ValueError):
            pass
    files = glob.glob(os.path.join(model_dir, "*.safetensors"))
    if files:
        return sum(os.path.getsize(f) for f in files), f"size of {len(files)} safetensors file(s) in {model_dir}"
    return None, ""


def _estimate_params(c: Mapping[str, Any]) -> float:
    """Dense decoder estimate from the architecture (used only without a size on disk)."""
    h = int(c["hidden_size"])
    L = int(c["num_hidden_layers"])
    heads = int(c["num_attention_heads"])
    kvh = int(c.get("num_key_value_heads") or heads)
    d = int(c.get("head_dim") or h // heads)
    inter = int(c.get("intermediate_size") or 4 * h)
    vocab = int(c.get("vocab_size") or 32000)
    attn = h * heads * d * 2 + h * kvh * d * 2
    mlp = 3 * h * inter
    experts = int(c.get("num_experts") or c.get("n_routed_experts") or c.get("num_local_experts") or 1)
    per_layer = attn + mlp * experts + 2 * h
    emb = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    return float(L * per_layer + emb)


def _facts_from_config(model: str, cfg: Mapping[str, Any], source: str, *, model_dir: Optional[str] = None,
                       params: Optional[float] = None, verified: bool = False) -> ModelFacts:
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), Mapping) else None
    c: Dict[str, Any] = dict(text) if text else dict(cfg)
    # some VL configs keep dtype / tie flags only at the top level
    for key in ("torch_dtype", "dtype", "tie_word_embeddings", "quantization_config"):
        if key not in c and key in cfg:
            c[key] = cfg[key]
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads") if not c.get(k)]
    if missing:
        raise ModelFactsError(
            f"{source}: config has no {', '.join(missing)}"
            f"{' (looked in text_config)' if text else ''}; pass --params and --dtype, or point at a full config.json"
        )
    heads = int(c["num_attention_heads"])
    hidden = int(c["hidden_size"])
    quant = None
    qc = c.get("quantization_config")
    if isinstance(qc, Mapping):
        quant = str(qc.get("quant_method") or "") or None
    dtype = str(c.get("torch_dtype") or c.get("dtype") or "bfloat16")
    arch = cfg.get("architectures") or c.get("architectures") or [cfg.get("architecture") or c.get("model_type") or "unknown"]
    est_params = params if params else _estimate_params(c)
    wbytes, wsource = (None, "")
    if model_dir:
        wbytes, wsource = _weights_on_disk(model_dir)
        if wbytes is not None and dtype.lower() in ("float32", "fp32", "float") and not quant:
            wbytes //= 2  # vLLM serves float32 checkpoints in 16 bits ("auto" dtype)
            wsource += " / 2 (float32 checkpoint served in 16 bits)"
    if wbytes is None:
        per = QUANT_BYTES_PER_PARAM.get(quant or "", DTYPE_BYTES.get(dtype.lower(), 2))
        wbytes = int(est_params * per)
        wsource = f"{'catalog' if params else 'estimated'} parameters {est_params / 1e9:.2f}B x {per:g} bytes"
    return ModelFacts(
        model=model,
        source=source,
        architecture=str(arch[0] if isinstance(arch, (list, tuple)) else arch),
        num_layers=int(c["num_hidden_layers"]),
        num_attention_heads=heads,
        num_kv_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=int(c.get("head_dim") or hidden // heads),
        hidden_size=hidden,
        intermediate_size=int(c.get("intermediate_size") or 4 * hidden),
        vocab_size=int(c.get("vocab_size") or 32000),
        max_position_embeddings=int(c.get("max_position_embeddings") or cfg.get("max_position_embeddings") or 4096),
        dtype=dtype,
        params=float(est_params),
        weight_bytes=int(wbytes),
        weight_source=wsource,
        multimodal=bool(text) or bool(cfg.get("multimodal")) or "vision_config" in cfg,
        quantization=quant,
        kv_lora_rank=int(c["kv_lora_rank"]) if c.get("kv_lora_rank") else None,
        qk_rope_head_dim=int(c["qk_rope_head_dim"]) if c.get("kv_lora_rank") else None,
        local_path=model_dir,
        verified=verified,
    )


def load_catalog(path: str = CATALOG_PATH) -> Dict[str, Dict[str, Any]]:
    with open(path, "rb") as fh:
        return _toml.load(fh)


def catalog_lookup(model: str, catalog: Optional[Mapping[str, Any]] = None) -> Optional[Tuple[str, Mapping[str, Any]]]:
    cat = catalog if catalog is not None else load_catalog()
    if model in cat:
        return model, cat[model]
    low = model.lower()
    for name, entry in cat.items():
        if name.lower() == low:
            return name, entry
    base = [(n, e) for n, e in cat.items() if n.split("/")[-1].lower() == low.split("/")[-1]]
    if len(base) == 1 and "/" not in model:
        return base[0]
    return None


OVERRIDE_KEYS = ("params", "dtype", "num_layers", "num_attention_heads", "num_kv_heads", "head_dim",
                 "hidden_size", "max_position_embeddings", "quantization", "weight_gib")


def load_model_facts(model: str, overrides: Optional[Mapping[str, Any]] = None,
                     env: Mapping[str, str] = os.environ) -> ModelFacts:
    """Facts for ``model`` (a hub id or a local directory), offline."""
    ov = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(ov) - set(OVERRIDE_KEYS)
    if unknown:
        raise ModelFactsError(f"unknown model-facts override(s) {sorted(unknown)}; known: {', '.join(OVERRIDE_KEYS)}")
    params_ov = parse_params(ov["params"]) if "params" in ov else None

    facts: Optional[ModelFacts] = None
    model_dir = find_model_dir(model, env)
    if model_dir:
        cfg_path = os.path.join(model_dir, "config.json")
        try:
            with open(cfg_path, encoding="utf-8") as fh:
                cfg = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ModelFactsError(f"cannot read {cfg_path}: {exc}; fix the file or pass --params and --dtype") from None
        if not isinstance(cfg, Mapping):
            raise ModelFactsError(f"{cfg_path} is not a JSON object; pass --params and --dtype")
        facts = _facts_from_config(model, cfg, cfg_path, model_dir=model_dir, params=params_ov)
    else:
        hit = catalog_lookup(model)
        if hit:
            name, entry = hit
            facts = _facts_from_config(model, entry, f"built-in catalog: {entry.get('source', name)}",
                                       params=params_ov or float(entry["params"]),
                                       verified=bool(entry.get("verified")))
        elif params_ov is not None:
            facts = _generic_facts(model, params_ov, ov)
    if facts is None:
        where = os.path.expanduser(model) if os.path.isdir(os.path.expanduser(model)) else hf_hub_cache(env)
        raise ModelFactsError(
            f"no facts for model '{model}': no config.json at {where} (local directory or Hugging Face cache "
            f"snapshot) and not in the built-in catalog",
            hint="pass --params (e.g. --params 7B) and, if not bf16, --dtype; or download the model's config.json "
                 "into the Hugging Face cache; docs/planner.md lists the built-in catalog",
        )
    return _apply_overrides(facts, ov, params_ov)


def _generic_facts(model: str, params: float, ov: Mapping[str, Any]) -> ModelFacts:
    """A dense decoder shaped like the Llama family of that size, when only --params is known."""
    if params < 3e9:
        shape = (28, 16, 8, 128, 2048)
    elif params < 12e9:
        shape = (32, 32, 8, 128, 4096)
    elif params < 40e9:
        shape = (64, 40, 8, 128, 5120)
    else:
        shape = (80, 64, 8, 128, 8192)
    L, heads, kvh, d, h = shape
    dtype = str(ov.get("dtype") or "bfloat16")
    return ModelFacts(
        model=model, source=f"--params {params / 1e9:.2f}B with a Llama-like shape assumed (L={L}, KV heads={kvh}, "
                            f"head_dim={d}); pass --num-layers/--num-kv-heads/--head-dim for exact KV sizes",
        architecture="unknown", num_layers=L, num_attention_heads=heads, num_kv_heads=kvh, head_dim=d,
        hidden_size=h, intermediate_size=int(h * 3.5), vocab_size=128256, max_position_embeddings=32768,
        dtype=dtype, params=params, weight_bytes=int(params * DTYPE_BYTES.get(dtype.lower(), 2)),
        weight_source="--params x dtype bytes",
    )


def _apply_overrides(f: ModelFacts, ov: Mapping[str, Any], params_ov: Optional[float]) -> ModelFacts:
    changes: Dict[str, Any] = {}
    for key in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "hidden_size", "max_position_embeddings"):
        if key in ov:
            try:
                changes[key] = int(ov[key])
            except (TypeError, ValueError):
                raise ModelFactsError(f"--{key.replace('_', '-')} must be an integer, got {ov[key]!r}") from None
    if "dtype" in ov:
        dt = str(ov["dtype"]).lower()
        if dt not in DTYPE_BYTES:
            raise ModelFactsError(f"--dtype {ov['dtype']!r} is not known; use one of bfloat16, float16, float32, fp8")
        changes["dtype"] = dt
    quant = str(ov["quantization"]).lower() if "quantization" in ov else None
    if quant:
        if quant not in QUANT_BYTES_PER_PARAM:
            raise ModelFactsError(f"--quantization {quant!r} is not known to the planner; use one of "
                                  f"{', '.join(sorted(QUANT_BYTES_PER_PARAM))}")
        changes["quantization"] = quant
    params = params_ov if params_ov is not None else f.params
    if params_ov is not None:
        changes["params"] = params_ov
    if "weight_gib" in ov:
        changes["weight_bytes"] = int(float(ov["weight_gib"]) * 2**30)
        changes["weight_source"] = "--weight-gib"
    elif quant and quant != (f.quantization or ""):
        changes["weight_bytes"] = int(params * QUANT_BYTES_PER_PARAM[quant])
        changes["weight_source"] = f"parameters {params / 1e9:.2f}B x {QUANT_BYTES_PER_PARAM[quant]:g} bytes ({quant})"
    elif params_ov is not None or "dtype" in ov:
        dt = changes.get("dtype", f.dtype)
        per = QUANT_BYTES_PER_PARAM.get(f.quantization or "", DTYPE_BYTES.get(dt.lower(), 2))
        changes["weight_bytes"] = int(params * per)
        changes["weight_source"] = f"parameters {params / 1e9:.2f}B x {per:g} bytes (override)"
    if not changes:
        return f
    return dataclasses.replace(f, source=f.source + " + overrides (" + ", ".join(sorted(ov)) + ")", **changes)
