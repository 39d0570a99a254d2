"""Model architecture facts, offline.

Where the facts come from, first match wins:

1. ``model`` is a local directory holding ``config.json``;
2. the local Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``): ``models--ORG--NAME/snapshots/<rev>/config.json``
   (the revision ``refs/main`` names, else the newest snapshot);
3. the built-in catalog ``pbsvllm/data/catalog.toml`` (config.json numbers of
   popular models, each entry with its checkpoint size and their sources).

For vision-language models the language model's numbers come from
``text_config``. Weight bytes: the safetensors index ``metadata.total_size``
when present, else the size of the ``*.safetensors`` files, else (a catalog
entry) its parameter count x dtype bytes or its checkpoint size, else the
architecture (:mod:`pbsvllm.modelarch`: MoE, MLA, vision towers,
quantization). Overrides (``--params``, ``--dtype``, ...) win over all of these.

KV-cache bytes per token per GPU follow vLLM (docs/planner.md)::

    2 x L_stage x max(1, KVH // TP) x D x dtype_bytes
    (MLA: L_stage x (kv_lora_rank + qk_rope_head_dim) x dtype_bytes)

with per-layer types for sliding-window, chunked-local and linear/Mamba layers
(:class:`pbsvllm.modelarch.LayerType`).

Every number read from a config.json or given as an override is validated
where it enters: a bad one is one line naming the file and key (or option).

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
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pbsvllm.errors import ModelFactsError
from pbsvllm.modelarch import (
    CHUNKED,
    FULL,
    LINEAR,
    MLA,
    SERVED_DTYPE_BYTES,
    ConfigReader,
    LayerType,
    MoE,
    ParamGroups,
    QuantScheme,
    count_params,
    expert_bytes,
    held_tokens,
    kv_group_size,
    layer_types,
    quant_scheme,
    weight_bytes,
)

if sys.version_info >= (3, 11):  # pragma: no cover
    import tomllib as _toml
else:  # pragma: no cover
    import tomli as _toml

CATALOG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "catalog.toml")

# bytes per weight element as vLLM loads it ("auto": float32 checkpoints are served in 16 bits)
DTYPE_BYTES = SERVED_DTYPE_BYTES
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
    weight_source: str                   # safetensors index / files / architecture / catalog / override
    multimodal: bool = False
    quantization: Optional[str] = None
    kv_lora_rank: Optional[int] = None   # MLA (DeepSeek)
    qk_rope_head_dim: Optional[int] = None
    local_path: Optional[str] = None     # a directory vLLM can load, when found on disk
    verified: bool = False
    model_type: str = ""
    layer_types: Tuple[LayerType, ...] = ()   # KV-cache layer types (empty: all full attention)
    moe: Optional[MoE] = None
    expert_bytes: int = 0                # bytes of the routed experts (what expert parallelism shards)
    quant_scheme: Optional[QuantScheme] = None
    param_groups: Optional[ParamGroups] = None
    estimated_weight_bytes: int = 0      # from the architecture alone (0: not computed)

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES.get(self.dtype.lower(), 2)

    @property
    def weight_gib(self) -> float:
        return self.weight_bytes / 2**30

    @property
    def kv_types(self) -> Tuple[LayerType, ...]:
        if self.layer_types:
            return self.layer_types
        if self.is_mla:
            return (LayerType(MLA, self.num_layers, 1, int(self.kv_lora_rank or 0) + int(self.qk_rope_head_dim or 0)),)
        return (LayerType(FULL, self.num_layers, self.num_kv_heads, self.head_dim),)

    @property
    def uniform_kv(self) -> bool:
        """One per-token layer type and no fixed-state layers: tokens / length is the concurrency."""
        types = self.kv_types
        if len(types) == 1 and types[0].kind in (FULL, MLA):
            return True
        # chunked local attention is allocated as full attention (see modelarch.held_tokens)
        return all(t.kind in (FULL, CHUNKED) for t in types) and len({(t.kv_heads, t.head_dim) for t in types}) == 1

    def kv_dtype_bytes(self, kv_dtype_bytes: Optional[int] = None) -> int:
        return kv_dtype_bytes if kv_dtype_bytes else min(self.dtype_bytes, 2)

    def kv_bytes_per_token(self, tp: int = 1, pp: int = 1, kv_dtype_bytes: Optional[int] = None,
                           length: Optional[int] = None, chunk: int = 0) -> int:
        """KV-cache bytes per token on ONE GPU of a TP x PP replica.

        One full-attention (or MLA) layer type: the classic formula. Sliding-window, chunked or
        linear/Mamba layers: the bytes one request of ``length`` tokens holds, per token, which is
        how vLLM (0.32) turns its memory into the "KV cache size: N tokens" it logs; without a
        length, every attention layer counted as full."""
        b = self.kv_dtype_bytes(kv_dtype_bytes)
        types = self.kv_types
        if self.uniform_kv:
            return math.ceil(sum(t.layers for t in types) / max(1, pp)) * types[0].bytes_per_token(tp, b)
        if length:
            return max(1, math.ceil(self.request_bytes(length, chunk, tp, pp, kv_dtype_bytes) / length))
        return sum(math.ceil(t.layers / max(1, pp)) * t.bytes_per_token(tp, b) for t in types) or 1

    def request_bytes(self, length: int, chunk: int, tp: int = 1, pp: int = 1,
                      kv_dtype_bytes: Optional[int] = None, block: int = 1) -> int:
        """KV bytes one request of ``length`` tokens holds on one GPU: full layers keep every token,
        sliding-window layers at most window - 1 + the prefill chunk, linear/Mamba layers a fixed state."""
        b = self.kv_dtype_bytes(kv_dtype_bytes)
        total = 0.0
        for t in self.kv_types:
            layers = t.layers / max(1, pp)
            if t.kind == LINEAR:
                total += layers * t.state_bytes(tp, b) * state_pages(t.mixer)
            else:
                total += layers * held_tokens(t, length, chunk, block) * t.bytes_per_token(tp, b)
        return int(math.ceil(total))

    def vllm_kv_tokens(self, kv_bytes: float, max_model_len: int, max_num_batched_tokens: int,
                       block: int = 16, kv_dtype_bytes: Optional[int] = None) -> int:
        """The "KV cache size: N tokens" vLLM 0.32 logs for ``kv_bytes`` of KV memory on one GPU
        (TP=PP=1): whole blocks of ``block`` tokens; with several layer types, the hybrid allocator's
        groups and its maximum concurrency at ``max_model_len`` x that length; Mamba/linear layers are
        padded to the attention page and hold :data:`STATE_PAGES_PER_REQUEST` pages per request."""
        b = self.kv_dtype_bytes(kv_dtype_bytes)
        types = [t for t in self.kv_types if t.kind != LINEAR]
        linear = [t for t in self.kv_types if t.kind == LINEAR]
        if self.uniform_kv:
            per_block = self.kv_bytes_per_token(1, 1, kv_dtype_bytes) * block
            return int(kv_bytes // per_block) * block
        gs = kv_group_size(self.kv_types)
        page = block * max(t.bytes_per_token(1, b) for t in types)
        num_blocks = int(kv_bytes // (page * gs))
        per_request = sum(math.ceil(t.layers / gs) * held_tokens(t, max_model_len, max_num_batched_tokens, block)
                          // block for t in types)
        per_request += sum(math.ceil(t.layers / gs) * state_pages(t.mixer) for t in linear)
        return int(num_blocks / per_request * max_model_len)

    def kv_detail(self, tp: int, pp: int, kv_dtype_bytes: Optional[int], length: int,
                  chunk: int) -> List[Dict[str, Any]]:
        """Per layer type: what one GPU keeps (for ``plan --json``'s ``kv_cache_layers``)."""
        b = self.kv_dtype_bytes(kv_dtype_bytes)
        out = []
        for t in self.kv_types:
            d = t.to_json()
            d["layers_per_stage"] = math.ceil(t.layers / max(1, pp))
            if t.kind == LINEAR:
                d["state_bytes_per_sequence_per_layer"] = t.state_bytes(tp, b)
            else:
                d["bytes_per_token_per_layer"] = t.bytes_per_token(tp, b)
                d["tokens_held_per_request"] = held_tokens(t, length, chunk)
            out.append(d)
        return out

    def to_json(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "layer_types":
                v = [t.to_json() for t in self.kv_types]
            elif hasattr(v, "to_json"):
                v = v.to_json()
            d[f.name] = v
        d["kv_bytes_per_token_tp1"] = self.kv_bytes_per_token(1)
        d["weight_gib"] = round(self.weight_gib, 2)
        return d


# ---------------------------------------------------------------------------

#: State pages one request holds in each Mamba2 / gated-DeltaNet layer: vLLM 0.32 with prefix caching
#: (on by default) keeps hybrid models' states in 'align' mode, and the maximum concurrency its CPU build
#: logged needs 3 pages per request for Mamba2 layers and 2 for gated DeltaNet ones (read off
#: tests/data/vllm-real/kv-families/hybrid-*.log; the rest of the prediction follows vLLM's allocator).
STATE_PAGES_PER_REQUEST = {"mamba2": 3, "gated_deltanet": 2}


def state_pages(mixer: str) -> int:
    return STATE_PAGES_PER_REQUEST.get(mixer, 3)

MODEL_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")


def check_model_name(model: str) -> None:
    """A model name (hub id or path) that can reach vLLM's command line as one argument."""
    if not model or not model.strip():
        raise ModelFactsError("the model name is empty; pass a Hugging Face id (org/name) or a local directory")
    if model.startswith("-"):
        raise ModelFactsError(f"model name {model!r} starts with '-': vLLM would read it as a flag",
                              hint="pass a Hugging Face id (org/name) or a path such as ./" + model)
    if not MODEL_NAME_RE.match(model):
        raise ModelFactsError(f"model name {model!r} contains control characters")


PARAMS_RANGE = (1e6, 1e14)   # 1M .. 100T parameters


def parse_params(value: Any) -> float:
    """'7B', '70b', '1.5e9', '500M', 8030000000 -> a parameter count (finite, 1M..100T)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        count = v * 1e9 if v < 1e5 else v  # '7' means 7B
    else:
        s = str(value).strip().lower().replace("_", "")
        m = re.match(r"^([0-9]*\.?[0-9]+(?:e[+]?[0-9]+)?)\s*([kmbt]?)$", s)
        if not m:
            raise ModelFactsError(f"--params must look like 7B, 1.5B, 500M or 7.6e9, got {value!r}")
        num = float(m.group(1))
        mult = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]
        if m.group(2) == "" and num < 1e5:
            mult = 1e9
        count = num * mult
    if not math.isfinite(count) or not PARAMS_RANGE[0] <= count <= PARAMS_RANGE[1]:
        raise ModelFactsError(f"--params {value!r} is not a parameter count between 1M and 100T")
    return count


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
        with open(ref, encoding="utf-8", errors="replace") as fh:
            rev = fh.read(200).strip()
        cand = os.path.join(snaps, rev)
        if rev and "/" not in rev and os.path.isfile(os.path.join(cand, "config.json")):
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
                meta = json.load(fh)
            total = meta.get("metadata", {}).get("total_size") if isinstance(meta, dict) else None
            if isinstance(total, (int, float)) and not isinstance(total, bool) and 0 < total < 1e15 \
                    and math.isfinite(total):
                return int(total), f"{index} metadata.total_size"
        except (OSError, ValueError, AttributeError, RecursionError):
            pass
    files = glob.glob(os.path.join(model_dir, "*.safetensors"))
    if files:
        return sum(os.path.getsize(f) for f in files), f"size of {len(files)} safetensors file(s) in {model_dir}"
    return None, ""


def _text_part(cfg: Mapping[str, Any], source: str) -> Tuple[Dict[str, Any], str]:
    text = cfg.get("text_config")
    if text is not None and not isinstance(text, Mapping):
        raise ModelFactsError(f"{source}: key 'text_config' must be an object, got {str(text)[:60]!r}")
    c: Dict[str, Any] = dict(text) if text else dict(cfg)
    # some VL configs keep dtype / tie flags / quantization only at the top level
    for key in ("torch_dtype", "dtype", "tie_word_embeddings", "quantization_config", "model_type"):
        if key not in c and key in cfg:
            c[key] = cfg[key]
    return c, "text_config." if text else ""


def _facts_from_config(model: str, cfg: Mapping[str, Any], source: str, *, model_dir: Optional[str] = None,
                       params: Optional[float] = None, verified: bool = False,
                       checkpoint_bytes: Optional[int] = None, checkpoint_source: str = "",
                       weight_known: bool = False) -> ModelFacts:
    c, prefix = _text_part(cfg, source)
    r = ConfigReader(c, source, prefix)
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads") if c.get(k) is None]
    if missing:
        raise ModelFactsError(
            f"{source}: config has no {', '.join(missing)}"
            f"{' (looked in text_config)' if prefix else ''}; pass --params and --dtype, or point at a full config.json"
        )
    hidden = r.req("hidden_size")
    n_layers = r.req("num_hidden_layers")
    heads = r.req("num_attention_heads")
    kvh = r.integer("num_key_value_heads", heads, minimum=1) or heads
    head_dim = r.integer("head_dim", 0, minimum=0) or hidden // heads
    if head_dim < 1:
        raise ModelFactsError(f"{source}: hidden_size {hidden} / num_attention_heads {heads} gives no head size; "
                              f"set '{prefix}head_dim'")
    inter = r.integer("intermediate_size", 4 * hidden, minimum=1) or 4 * hidden
    vocab = r.integer("vocab_size", 32000, minimum=1) or 32000
    max_len = r.integer("max_position_embeddings", 0, minimum=1) or \
        int(ConfigReader(cfg, source).integer("max_position_embeddings", 4096, minimum=1) or 4096)
    model_type = str(c.get("model_type") or cfg.get("model_type") or "")
    qc = c.get("quantization_config")
    if qc is not None and not isinstance(qc, Mapping):
        raise ModelFactsError(f"{source}: key 'quantization_config' must be an object")
    scheme: Optional[QuantScheme] = None
    if isinstance(qc, Mapping):
        try:
            scheme = quant_scheme(qc, source)
        except ModelFactsError:
            # an unknown method is fatal only when nothing else gives the weight size
            if not weight_known and not (model_dir and _weights_on_disk(model_dir)[0] is not None):
                raise
            scheme = QuantScheme(str(qc.get("quant_method") or "unknown"), 2.0, "unknown quantization")
    dtype = str(c.get("torch_dtype") or c.get("dtype") or "bfloat16")
    if dtype.lower() not in DTYPE_BYTES:
        raise ModelFactsError(f"{source}: key '{prefix}torch_dtype' {dtype!r} is not a dtype vLLM serves "
                              f"(bfloat16, float16, float32)")
    arch = cfg.get("architectures") or c.get("architectures") or [cfg.get("architecture") or model_type or "unknown"]
    types = layer_types(r, n_layers=n_layers, heads=heads, kv_heads=kvh, head_dim=head_dim, hidden=hidden,
                        model_type=model_type, max_len=max_len)
    groups, moe = count_params(r, cfg, n_layers=n_layers, hidden=hidden, heads=heads, kv_heads=kvh,
                               head_dim=head_dim, inter=inter, vocab=vocab, model_type=model_type, kinds=types)
    dbytes = DTYPE_BYTES.get(dtype.lower(), 2)
    est = weight_bytes(groups, scheme, dbytes)
    wbytes: Optional[int] = None
    wsource = ""
    if model_dir:
        wbytes, wsource = _weights_on_disk(model_dir)
        if wbytes is not None and dtype.lower() in ("float32", "fp32", "float") and not scheme:
            wbytes //= 2  # vLLM serves float32 checkpoints in 16 bits ("auto" dtype)
            wsource += " / 2 (float32 checkpoint served in 16 bits)"
    if wbytes is None and params and not scheme:
        per = DTYPE_BYTES.get(dtype.lower(), 2)
        wbytes = int(params * per)
        wsource = f"catalog parameters {params / 1e9:.2f}B x {per:g} bytes"
    if wbytes is None and checkpoint_bytes:
        wbytes = int(checkpoint_bytes)
        wsource = f"catalog: the checkpoint's total_size ({checkpoint_source or 'see the catalog entry'})"
    if wbytes is None:
        wbytes = est
        wsource = (f"estimated from the architecture: {groups.total / 1e9:.2f}B parameters"
                   + (f", {scheme.description}" if scheme else f" x {dbytes} bytes"))
    vc = cfg.get("vision_config")
    return ModelFacts(
        model=model,
        source=source,
        architecture=str(arch[0] if isinstance(arch, (list, tuple)) and arch else arch),
        num_layers=n_layers,
        num_attention_heads=heads,
        num_kv_heads=kvh,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=max_len,
        dtype=dtype,
        params=float(params or groups.total),
        weight_bytes=int(wbytes),
        weight_source=wsource,
        multimodal=bool(prefix) or bool(cfg.get("multimodal")) or isinstance(vc, Mapping),
        quantization=scheme.method if scheme else None,
        kv_lora_rank=r.integer("kv_lora_rank", minimum=1),
        qk_rope_head_dim=r.integer("qk_rope_head_dim", 0, minimum=0) if r.has("kv_lora_rank") else None,
        local_path=model_dir,
        verified=verified,
        model_type=model_type,
        layer_types=types,
        moe=moe,
        expert_bytes=int(expert_bytes(groups, scheme, dbytes) * (wbytes / est if est else 1.0)),
        quant_scheme=scheme,
        param_groups=groups,
        estimated_weight_bytes=est,
    )


def load_catalog(path: str = CATALOG_PATH) -> Dict[str, Dict[str, Any]]:
    with open(path, "rb") as fh:
        data: Dict[str, Dict[str, Any]] = _toml.load(fh)
    return data


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


def catalog_config(entry: Mapping[str, Any]) -> Dict[str, Any]:
    """The config.json part of a catalog entry (its other keys describe the checkpoint)."""
    return {k: v for k, v in entry.items() if k not in CATALOG_META_KEYS}


CATALOG_META_KEYS = ("source", "verified", "params", "checkpoint_bytes", "checkpoint_source", "family",
                     "released", "notes", "architecture")


def facts_from_catalog_entry(model: str, name: str, entry: Mapping[str, Any],
                             params: Optional[float] = None) -> ModelFacts:
    cfg = catalog_config(entry)
    if "architectures" not in cfg and entry.get("architecture"):
        cfg["architectures"] = [entry["architecture"]]
    raw_params = entry.get("params")
    return _facts_from_config(
        model, cfg, f"built-in catalog: {entry.get('source', name)}",
        params=params or (float(raw_params) if isinstance(raw_params, (int, float)) else None),
        verified=bool(entry.get("verified")),
        checkpoint_bytes=int(entry["checkpoint_bytes"]) if isinstance(entry.get("checkpoint_bytes"), int) else None,
        checkpoint_source=str(entry.get("checkpoint_source") or ""))


OVERRIDE_KEYS = ("params", "dtype", "num_layers", "num_attention_heads", "num_kv_heads", "head_dim",
                 "hidden_size", "max_position_embeddings", "quantization", "weight_gib")


def load_model_facts(model: str, overrides: Optional[Mapping[str, Any]] = None,
                     env: Mapping[str, str] = os.environ) -> ModelFacts:
    """Facts for ``model`` (a hub id or a local directory), offline."""
    check_model_name(model)
    ov = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(ov) - set(OVERRIDE_KEYS)
    if unknown:
        raise ModelFactsError(f"unknown model-facts override(s) {sorted(unknown)}; known: {', '.join(OVERRIDE_KEYS)}")
    params_ov = parse_params(ov["params"]) if "params" in ov else None

    facts: Optional[ModelFacts] = None
    model_dir = find_model_dir(model, env)
    if model_dir:
        cfg_path = os.path.join(model_dir, "config.json")
        cfg = _read_config(cfg_path)
        facts = _facts_from_config(model, cfg, cfg_path, model_dir=model_dir, params=params_ov,
                                   weight_known="weight_gib" in ov)
    else:
        hit = catalog_lookup(model)
        if hit:
            name, entry = hit
            facts = facts_from_catalog_entry(model, name, entry, params_ov)
        elif params_ov is not None:
            facts = _generic_facts(model, params_ov, ov)
    if facts is None:
        where = os.path.expanduser(model) if os.path.isdir(os.path.expanduser(model)) else hf_hub_cache(env)
        raise ModelFactsError(
            f"no facts for model '{model}': no config.json at {where} (local directory or Hugging Face cache "
            f"snapshot) and not in the built-in catalog",
            hint="pass --params (e.g. --params 7B) and, if not bf16, --dtype; or download the model's config.json "
                 "into the Hugging Face cache; `pbsvllm models` lists the built-in catalog",
        )
    return _apply_overrides(facts, ov, params_ov)


MAX_CONFIG_BYTES = 16 * 2**20


def _read_config(cfg_path: str) -> Mapping[str, Any]:
    """config.json as a JSON object, or one clear error (binary, huge, deeply nested, not an object)."""
    try:
        if os.path.getsize(cfg_path) > MAX_CONFIG_BYTES:
            raise ModelFactsError(f"{cfg_path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; not a config.json")
        with open(cfg_path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except ModelFactsError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        reason = "too deeply nested" if isinstance(exc, RecursionError) else \
            "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)[:120]
        raise ModelFactsError(f"cannot read {cfg_path}: {reason}; fix the file or pass --params and --dtype") from None
    if not isinstance(cfg, Mapping):
        raise ModelFactsError(f"{cfg_path} is not a JSON object; pass --params and --dtype")
    return cfg


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


OVERRIDE_LIMITS = {"num_layers": 1e4, "num_attention_heads": 1e5, "num_kv_heads": 1e5, "head_dim": 1e5,
                   "hidden_size": 1e6, "max_position_embeddings": 1e9}


def _apply_overrides(f: ModelFacts, ov: Mapping[str, Any], params_ov: Optional[float]) -> ModelFacts:
    changes: Dict[str, Any] = {}
    for key, limit in OVERRIDE_LIMITS.items():
        if key in ov:
            opt = f"--{key.replace('_', '-')}"
            try:
                val = ov[key]
                if isinstance(val, bool) or (isinstance(val, float) and not val.is_integer()):
                    raise ValueError
                num = int(val)
            except (TypeError, ValueError, OverflowError):
                raise ModelFactsError(f"{opt} must be a positive integer, got {ov[key]!r}") from None
            if not 1 <= num <= limit:
                raise ModelFactsError(f"{opt} must be between 1 and {limit:.0f}, got {num}")
            changes[key] = num
    if {"num_layers", "num_kv_heads", "head_dim"} & set(changes):
        changes["layer_types"] = ()            # the overrides describe a plain full-attention decoder
        changes["kv_lora_rank"] = None
        changes["qk_rope_head_dim"] = None
    if "dtype" in ov:
        dt = str(ov["dtype"]).lower()
        if dt not in DTYPE_BYTES:
            raise ModelFactsError(f"--dtype {ov['dtype']!r} is not known; use one of bfloat16, float16, float32, fp8")
        changes["dtype"] = dt
    quant = str(ov["quantization"]).lower() if "quantization" in ov else None
    params = params_ov if params_ov is not None else f.params
    if params_ov is not None:
        changes["params"] = params_ov
    if quant:
        if quant not in QUANT_BYTES_PER_PARAM:
            raise ModelFactsError(f"--quantization {quant!r} is not known to the planner; use one of "
                                  f"{', '.join(sorted(QUANT_BYTES_PER_PARAM))}")
        changes["quantization"] = quant
    if "weight_gib" in ov:
        try:
            gib = float(ov["weight_gib"])
        except (TypeError, ValueError):
            gib = float("nan")
        if not math.isfinite(gib) or not 0 < gib <= 1e6:
            raise ModelFactsError(f"--weight-gib must be a positive number of GiB, got {ov['weight_gib']!r}")
        changes["weight_bytes"] = int(gib * 2**30)
        changes["weight_source"] = "--weight-gib"
    elif quant and quant != (f.quantization or ""):
        changes["weight_bytes"] = quantized_weight_bytes(f, quant, params)
        changes["weight_source"] = f"{quant} weights: {describe_quantized(f, quant, params)}"
    elif params_ov is not None or "dtype" in ov:
        dt = changes.get("dtype", f.dtype)
        per = QUANT_BYTES_PER_PARAM.get(f.quantization or "", DTYPE_BYTES.get(dt.lower(), 2))
        changes["weight_bytes"] = int(params * per)
        changes["weight_source"] = f"parameters {params / 1e9:.2f}B x {per:g} bytes (override)"
    if not changes:
        return f
    return dataclasses.replace(f, source=f.source + " + overrides (" + ", ".join(sorted(ov)) + ")", **changes)


def quantized_weight_bytes(f: ModelFacts, quant: str, params: Optional[float] = None) -> int:
    """Weight bytes when vLLM quantizes an unquantized checkpoint (``--quantization``): its linear
    layers at the quantized width, embeddings, LM head, norms and vision tower in 16 bits. Without
    the architecture's parameter groups, parameters x the method's bytes per parameter."""
    per = QUANT_BYTES_PER_PARAM[quant]
    g = f.param_groups
    if g is None or params is not None and abs(params - f.params) > 1:
        return int((params or f.params) * per)
    scheme = QuantScheme(quant, per, quant)
    return weight_bytes(g, scheme, f.dtype_bytes)


def describe_quantized(f: ModelFacts, quant: str, params: Optional[float] = None) -> str:
    per = QUANT_BYTES_PER_PARAM[quant]
    if f.param_groups is None or params is not None and abs(params - f.params) > 1:
        return f"parameters {(params or f.params) / 1e9:.2f}B x {per:g} bytes"
    return f"linear layers at {per:g} bytes per parameter, embeddings and LM head in 16 bits"


