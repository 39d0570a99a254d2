"""A model's architecture from its ``config.json`` alone: weight bytes and KV-cache layout.

Pure (data in, data out). Used when no safetensors index is on disk, as when
a user plans before downloading. The rules, each with its public source, are
in docs/planner.md ("Weights from the architecture", "KV cache as vLLM
allocates it"). In short:

- **Parameters** are counted per tensor group the way the Hugging Face
  modelling code lays them out: embeddings, LM head (unless tied), attention
  (GQA, or MLA's low-rank projections), dense MLPs, MoE layers (routed experts
  of ``moe_intermediate_size``, shared experts, the router; dense first layers
  by ``first_k_dense_replace`` / ``mlp_only_layers`` / ``decoder_sparse_step``
  / ``moe_layer_freq`` / ``mlp_layer_types``), Mamba2 and gated-DeltaNet
  mixers of hybrid models, and a vision tower from ``vision_config``.
- **Bytes per parameter** follow ``quantization_config``: fp8 (1 byte, plus
  one fp32 scale per 128x128 block when block-wise), AWQ / GPTQ int4 (half a
  byte plus a 16-bit scale and a 4-bit zero per group), compressed-tensors
  (its ``config_groups``), MXFP4 (half a byte plus one 8-bit scale per 32) and
  NVFP4 (half a byte plus one fp8 scale per 16). Embeddings, the LM head,
  norms, routers and vision towers stay in 16 bits, as do the modules a
  checkpoint lists in ``ignore`` / ``modules_to_not_convert``.
- **KV cache** per layer type: full attention, sliding window
  (``sliding_window`` with ``layer_types`` / ``sliding_window_pattern``),
  chunked local attention (Llama 4), MLA's compressed latent, and the fixed
  per-sequence state of Mamba2 / linear-attention layers.

Every number read from a config is validated here: a non-numeric, negative,
infinite or absurd value is a :class:`~pbsvllm.errors.ModelFactsError` naming
the file and the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import ModelFactsError

# Upper bounds for "absurd" architecture numbers (an order of magnitude or
# more above any released model).
LIMITS: Dict[str, float] = {
    "hidden_size": 1e6, "num_hidden_layers": 1e4, "num_attention_heads": 1e5, "num_key_value_heads": 1e5,
    "head_dim": 1e5, "intermediate_size": 1e7, "vocab_size": 1e8, "max_position_embeddings": 1e9,
    "experts": 1e5, "default": 1e9,
}

EXPERT_COUNT_KEYS = ("num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts")
EXPERTS_PER_TOKEN_KEYS = ("num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_top_k")

# bytes per element of a 16-bit or 32-bit checkpoint as vLLM loads it ("auto": fp32 is served in 16 bits)
SERVED_DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2, "float32": 2, "fp32": 2,
                      "float": 2, "auto": 2, "fp8": 1, "float8": 1, "int8": 1}


class ConfigReader:
    """Typed, validated access to one config mapping; errors name ``where`` and the key."""

    def __init__(self, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
        self.data = data
        self.where = where
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def num(self, key: str, default: Optional[float] = None, *, minimum: float = 0.0,
            maximum: Optional[float] = None, integer: bool = True) -> Optional[float]:
        value = self.data.get(key)
        if value is None:
            return default
        limit = maximum if maximum is not None else LIMITS.get(key, LIMITS["default"])
        bad = f"{self.where}: key '{self._name(key)}'"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelFactsError(f"{bad} must be a number, got {value!r}",
                                  hint="fix the config or pass --params/--dtype and the shape overrides")
        if not math.isfinite(value):
            raise ModelFactsError(f"{bad} must be a finite number, got {value!r}")
        if value < minimum:
            raise ModelFactsError(f"{bad} must be >= {minimum:g}, got {value!r}")
        if value > limit:
            raise ModelFactsError(f"{bad} is absurdly large ({value!r} > {limit:g}); is the config corrupt?")
        if integer and float(value) != int(value):
            raise ModelFactsError(f"{bad} must be a whole number, got {value!r}")
        return float(value)

    def integer(self, key: str, default: Optional[int] = None, *, minimum: int = 0,
            maximum: Optional[float] = None) -> Optional[int]:
        v = self.num(key, None, minimum=minimum, maximum=maximum)
        return default if v is None else int(v)

    def req(self, key: str, *, minimum: int = 1) -> int:
        v = self.integer(key, None, minimum=minimum)
        if v is None:
            raise ModelFactsError(f"{self.where}: config has no '{self._name(key)}'")
        return v

    def first_int(self, keys: Sequence[str], default: Optional[int] = None, *, minimum: int = 0,
                  maximum: Optional[float] = None) -> Optional[int]:
        for k in keys:
            if self.has(k):
                return self.integer(k, default, minimum=minimum, maximum=maximum)
        return default

    def str_list(self, key: str) -> Optional[List[str]]:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ModelFactsError(f"{self.where}: key '{self._name(key)}' must be a list of strings, got "
                                  f"{str(value)[:80]!r}")
        return list(value)

    def int_list(self, key: str) -> Optional[List[int]]:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            raise ModelFactsError(f"{self.where}: key '{self._name(key)}' must be a list of integers, got "
                                  f"{str(value)[:80]!r}")
        return list(value)


# ---------------------------------------------------------------------------
# layers and KV cache
# ---------------------------------------------------------------------------

FULL, SLIDING, CHUNKED, MLA, LINEAR = "full_attention", "sliding_attention", "chunked_attention", "mla", "linear"


@dataclass(frozen=True)
class LayerType:
    """One kind of layer as the KV cache sees it, and how many of them."""

    kind: str                   # full_attention | sliding_attention | chunked_attention | mla | linear
    layers: int
    kv_heads: int = 0           # attention: KV heads (MLA: 1)
    head_dim: int = 0           # attention: per-head K (=V) size; MLA: kv_lora_rank + qk_rope_head_dim
    window: Optional[int] = None  # sliding window / attention chunk in tokens
    state_elems: int = 0        # linear / Mamba: per-sequence state, elements per layer (conv + ssm)
    state_dtype_bytes: int = 0  # 0 = the KV-cache dtype
    mixer: str = ""             # linear layers: mamba2 | gated_deltanet

    def bytes_per_token(self, tp: int, kv_b: int) -> int:
        """KV bytes one token needs in one layer of this type, on one GPU of a TP group."""
        if self.kind == LINEAR:
            return 0
        if self.kind == MLA:       # the latent is replicated on every TP rank, no separate V
            return self.head_dim * kv_b
        return 2 * max(1, self.kv_heads // max(1, tp)) * self.head_dim * kv_b

    def state_bytes(self, tp: int, kv_b: int) -> int:
        """Fixed per-sequence bytes of one linear/Mamba layer on one GPU (heads split by TP)."""
        if self.kind != LINEAR:
            return 0
        return (self.state_elems // max(1, tp)) * (self.state_dtype_bytes or kv_b)

    def to_json(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"kind": self.kind, "layers": self.layers}
        if self.kind == LINEAR:
            d.update(mixer=self.mixer, state_elements_per_layer=self.state_elems)
        else:
            d.update(kv_heads=self.kv_heads, head_dim=self.head_dim)
        if self.window:
            d["window"] = self.window
        return d


def _layer_kinds(r: ConfigReader, n_layers: int, model_type: str, max_len: int) -> List[str]:
    """One kind per layer: full/sliding/chunked attention, or linear (Mamba, gated DeltaNet)."""
    kinds: Optional[List[str]] = None
    types = r.str_list("layer_types")
    if types is not None:
        if len(types) != n_layers:
            raise ModelFactsError(f"{r.where}: key '{r.prefix}layer_types' has {len(types)} entries for "
                                  f"{n_layers} layers")
        m = {"full_attention": FULL, "attention": FULL, "sliding_attention": SLIDING,
             "chunked_attention": CHUNKED, "linear_attention": LINEAR, "mamba": LINEAR, "mamba2": LINEAR}
        unknown = sorted({t for t in types if t not in m})
        if unknown:
            raise ModelFactsError(f"{r.where}: key '{r.prefix}layer_types' has unknown layer type(s) {unknown}")
        kinds = [m[t] for t in types]
    pattern = r.data.get("hybrid_override_pattern")
    if kinds is None and isinstance(pattern, str):
        if len(pattern) != n_layers:
            raise ModelFactsError(f"{r.where}: key '{r.prefix}hybrid_override_pattern' has {len(pattern)} "
                                  f"layers, num_hidden_layers says {n_layers}")
        kinds = [LINEAR if ch == "M" else FULL if ch == "*" else "none" for ch in pattern]
    if kinds is None and r.has("full_attention_interval") and model_type.startswith("qwen3_next"):
        every = r.req("full_attention_interval")
        kinds = [FULL if (i + 1) % every == 0 else LINEAR for i in range(n_layers)]
    window = r.integer("sliding_window", minimum=1)
    if kinds is None and window and window < max_len:
        if r.has("sliding_window_pattern"):            # Gemma 3 configs: every Nth layer is global
            every = r.req("sliding_window_pattern")
            kinds = [FULL if (i + 1) % every == 0 else SLIDING for i in range(n_layers)]
        elif model_type in ("gemma2", "cohere2"):       # alternating local / global
            kinds = [SLIDING if i % 2 == 0 else FULL for i in range(n_layers)]
        elif model_type.startswith("gemma3"):
            kinds = [FULL if (i + 1) % 6 == 0 else SLIDING for i in range(n_layers)]
        elif r.data.get("use_sliding_window", True) is not False:
            kinds = [SLIDING] * n_layers
    chunk = r.integer("attention_chunk_size", minimum=1)
    if kinds is None and chunk and model_type.startswith("llama4"):
        rope = r.int_list("no_rope_layers")   # 1 = RoPE layer (chunked local attention), 0 = global NoPE layer
        if rope and len(rope) == n_layers:
            kinds = [CHUNKED if x else FULL for x in rope]
        else:
            kinds = [FULL if (i + 1) % 4 == 0 else CHUNKED for i in range(n_layers)]
    return kinds or [FULL] * n_layers


def layer_types(r: ConfigReader, *, n_layers: int, heads: int, kv_heads: int, head_dim: int, hidden: int,
                model_type: str, max_len: int) -> Tuple[LayerType, ...]:
    """The KV-cache layer types of a decoder, counted."""
    if r.has("kv_lora_rank"):
        d = r.req("kv_lora_rank") + (r.integer("qk_rope_head_dim", 0, minimum=0) or 0)
        return (LayerType(MLA, n_layers, 1, d),)
    kinds = _layer_kinds(r, n_layers, model_type, max_len)
    out: List[LayerType] = []
    window = r.integer("sliding_window", minimum=1)
    chunk = r.integer("attention_chunk_size", minimum=1)
    for kind in (FULL, SLIDING, CHUNKED):
        n = kinds.count(kind)
        if n:
            out.append(LayerType(kind, n, kv_heads, head_dim,
                                 window if kind == SLIDING else chunk if kind == CHUNKED else None))
    n_lin = kinds.count(LINEAR)
    if n_lin:
        elems, mixer, sdt = _linear_state(r, hidden)
        out.append(LayerType(LINEAR, n_lin, state_elems=elems, state_dtype_bytes=sdt, mixer=mixer))
    return tuple(out)


def _mamba_dims(r: ConfigReader, hidden: int) -> Tuple[int, int, int, int, int]:
    """(d_inner, n_groups, d_state, n_heads, d_conv) of a Mamba2 mixer."""
    n_heads = r.first_int(("mamba_n_heads", "mamba_num_heads"), minimum=1)
    head = r.first_int(("mamba_d_head", "mamba_head_dim"), minimum=1)
    expand = r.num("mamba_expand", None, minimum=0, integer=False)
    d_inner = n_heads * head if (n_heads and head) else int((expand or 2) * hidden)
    n_heads = n_heads or max(1, d_inner // (head or 64))
    groups = r.first_int(("mamba_n_groups", "mamba_num_groups", "n_groups"), 1, minimum=1) or 1
    d_state = r.first_int(("mamba_d_state", "ssm_state_size", "mamba_state_dim", "state_size"), 128, minimum=1) or 128
    d_conv = r.first_int(("mamba_d_conv", "conv_kernel"), 4, minimum=1) or 4
    return d_inner, groups, d_state, n_heads, d_conv


def _linear_state(r: ConfigReader, hidden: int) -> Tuple[int, str, int]:
    """(state elements per layer per sequence, mixer name, state dtype bytes or 0)."""
    sdt = 4 if str(r.data.get("mamba_ssm_dtype") or "").lower() in ("float32", "fp32") else 0
    if r.has("linear_num_value_heads"):            # gated DeltaNet (Qwen3-Next)
        nk = r.req("linear_num_key_heads")
        nv = r.req("linear_num_value_heads")
        dk = r.req("linear_key_head_dim")
        dv = r.req("linear_value_head_dim")
        conv = r.integer("linear_conv_kernel_dim", 4, minimum=1) or 4
        conv_elems = (2 * nk * dk + nv * dv) * (conv - 1)
        return conv_elems + nv * dk * dv, "gated_deltanet", sdt
    d_inner, groups, d_state, n_heads, d_conv = _mamba_dims(r, hidden)
    conv_elems = (d_inner + 2 * groups * d_state) * (d_conv - 1)
    head = d_inner // max(1, n_heads)
    return conv_elems + n_heads * head * d_state, "mamba2", sdt


# ---------------------------------------------------------------------------
# parameters by tensor group
# ---------------------------------------------------------------------------

@dataclass
class ParamGroups:
    """Parameter counts of a checkpoint by what quantization does to them."""

    embed: int = 0          # input embeddings (16-bit)
    lm_head: int = 0        # output projection (16-bit unless a checkpoint quantizes it)
    attn: int = 0           # attention linear layers of the decoder
    mlp: int = 0            # dense MLPs
    experts: int = 0        # routed experts (the part expert parallelism shards)
    shared: int = 0         # shared experts
    mixer: int = 0          # Mamba2 / DeltaNet linear projections
    small: int = 0          # norms, routers, biases, convs, SSM parameters: always 16-bit
    vision: int = 0         # vision tower and projector: 16-bit

    @property
    def total(self) -> int:
        return (self.embed + self.lm_head + self.attn + self.mlp + self.experts + self.shared + self.mixer
                + self.small + self.vision)

    def to_json(self) -> Dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()} | {"total": self.total}


@dataclass(frozen=True)
class MoE:
    experts: int
    experts_per_token: int
    expert_intermediate: int
    moe_layers: int
    dense_layers: int
    shared_intermediate: int = 0     # total over shared experts, per layer

    def to_json(self) -> Dict[str, int]:
        return dict(self.__dict__)


def _moe_layer_flags(r: ConfigReader, n_layers: int) -> List[bool]:
    """Which decoder layers are MoE."""
    mlt = r.str_list("mlp_layer_types")
    if mlt is not None and len(mlt) == n_layers:
        return [t != "dense" for t in mlt]
    first_dense = r.integer("first_k_dense_replace", 0, minimum=0) or 0
    freq = r.integer("moe_layer_freq", 1, minimum=1) or 1
    step = r.integer("decoder_sparse_step", 1, minimum=1) or 1
    interleave = r.integer("interleave_moe_layer_step", 1, minimum=1) or 1
    only = set(r.int_list("mlp_only_layers") or [])
    flags = []
    for i in range(n_layers):
        moe = i >= first_dense and (i - first_dense) % freq == 0 and (i + 1) % step == 0 \
            and (i + 1) % interleave == 0 and i not in only
        flags.append(moe)
    return flags


def moe_facts(r: ConfigReader, n_layers: int, inter: int) -> Optional[MoE]:
    experts = r.first_int(EXPERT_COUNT_KEYS, 0, minimum=0, maximum=LIMITS["experts"]) or 0
    if experts <= 1:
        return None
    top = r.first_int(EXPERTS_PER_TOKEN_KEYS, 1, minimum=1) or 1
    flags = _moe_layer_flags(r, n_layers)
    moe_layers = sum(flags)
    e_inter = r.integer("moe_intermediate_size", minimum=1) or inter
    shared = 0
    if r.has("n_shared_experts"):
        shared = (r.integer("n_shared_experts", 0, minimum=0) or 0) * e_inter
    for key in ("shared_expert_intermediate_size", "shared_intermediate_size"):
        if r.has(key):
            shared = r.integer(key, 0, minimum=0) or 0
    if r.data.get("model_type", "").startswith("llama4"):
        shared = e_inter                                    # Llama 4: one shared expert per MoE layer
    return MoE(experts, top, e_inter, moe_layers, n_layers - moe_layers, shared)


def _vision_params(v: Mapping[str, Any], where: str, text_hidden: int) -> int:
    """A ViT tower plus its projector, from ``vision_config`` (16-bit)."""
    r = ConfigReader(v, where, "vision_config.")
    hv = r.first_int(("hidden_size", "embed_dim", "width"), minimum=1)
    depth = r.first_int(("depth", "num_hidden_layers", "num_layers"), minimum=1)
    if not hv or not depth:
        return 0
    inter = r.first_int(("intermediate_size", "mlp_dim"), minimum=1) or 4 * hv
    act = str(v.get("hidden_act") or v.get("hidden_activation") or "gelu").lower()
    gated = "silu" in act or "swiglu" in act
    per_layer = 4 * hv * hv + (3 if gated else 2) * hv * inter + 4 * hv
    patch = r.integer("patch_size", 14, minimum=1) or 14
    chans = r.first_int(("num_channels", "in_channels", "in_chans"), 3, minimum=1) or 3
    temporal = r.integer("temporal_patch_size", 1, minimum=1) or 1
    image = r.integer("image_size", 0, minimum=0) or 0
    pos = (image // patch) ** 2 * hv if image else 0
    out_hidden = r.integer("out_hidden_size", text_hidden, minimum=1) or text_hidden
    merge = r.integer("spatial_merge_size", 0, minimum=0) or 0
    if merge:                                  # Qwen-VL patch merger: an MLP over merge^2 patches
        m = hv * merge * merge
        projector = m * m + m * out_hidden
    else:
        projector = hv * out_hidden
    return depth * per_layer + chans * patch * patch * temporal * hv + pos + projector


def count_params(r: ConfigReader, top: Mapping[str, Any], *, n_layers: int, hidden: int, heads: int,
                 kv_heads: int, head_dim: int, inter: int, vocab: int, model_type: str,
                 kinds: Sequence[LayerType]) -> Tuple[ParamGroups, Optional[MoE]]:
    """Parameters of the checkpoint by group (the MTP / next-token-prediction layers excluded)."""
    g = ParamGroups()
    tie = r.data.get("tie_word_embeddings", top.get("tie_word_embeddings"))
    if tie is None:                               # the modelling code's default
        tie = model_type.startswith("gemma")
    g.embed = vocab * hidden
    g.lm_head = 0 if tie else vocab * hidden
    # attention layers
    n_attn = sum(t.layers for t in kinds if t.kind != LINEAR)
    pattern = r.data.get("hybrid_override_pattern")
    if isinstance(pattern, str):
        n_attn = pattern.count("*")
    if r.has("kv_lora_rank"):
        q_lora = r.integer("q_lora_rank", 0, minimum=0) or 0
        nope = r.integer("qk_nope_head_dim", 128, minimum=0) or 0
        rope = r.integer("qk_rope_head_dim", 64, minimum=0) or 0
        v_dim = r.integer("v_head_dim", 128, minimum=1) or 128
        kvl = r.req("kv_lora_rank")
        q = (hidden * q_lora + q_lora * heads * (nope + rope)) if q_lora else hidden * heads * (nope + rope)
        attn = q + hidden * (kvl + rope) + kvl * heads * (nope + v_dim) + heads * v_dim * hidden
        g.small += n_attn * (kvl + q_lora)
    else:
        q_mult = 2 if model_type.startswith("qwen3_next") else 1      # gated attention: q and its gate
        attn = hidden * heads * head_dim * (1 + q_mult) + 2 * hidden * kv_heads * head_dim
        if r.data.get("attention_bias") or model_type in ("qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"):
            g.small += n_attn * (heads + 2 * kv_heads) * head_dim
    g.attn = n_attn * attn
    # linear-attention / Mamba mixers
    for t in kinds:
        if t.kind == LINEAR:
            if t.mixer == "gated_deltanet":
                nk, nv = r.req("linear_num_key_heads"), r.req("linear_num_value_heads")
                dk, dv = r.req("linear_key_head_dim"), r.req("linear_value_head_dim")
                conv = r.integer("linear_conv_kernel_dim", 4, minimum=1) or 4
                g.mixer += t.layers * (hidden * (2 * nk * dk + 2 * nv * dv) + hidden * 2 * nv + nv * dv * hidden)
                g.small += t.layers * ((2 * nk * dk + nv * dv) * conv + 3 * nv + dv)
            else:
                d_inner, groups, d_state, nh, d_conv = _mamba_dims(r, hidden)
                conv_dim = d_inner + 2 * groups * d_state
                g.mixer += t.layers * (hidden * (2 * d_inner + 2 * groups * d_state + nh) + d_inner * hidden)
                g.small += t.layers * (conv_dim * d_conv + conv_dim + 3 * nh + d_inner)
    # MLPs
    moe = moe_facts(r, n_layers, inter)
    if isinstance(pattern, str):       # Nemotron-H: '-' layers are (non-gated, relu^2) MLPs, 'E' MoE
        g.mlp = pattern.count("-") * 2 * hidden * inter
    elif moe:
        dense_inter = r.integer("intermediate_size_mlp", inter, minimum=1) or inter
        g.mlp = moe.dense_layers * 3 * hidden * dense_inter
        g.experts = moe.moe_layers * moe.experts * 3 * hidden * moe.expert_intermediate
        g.shared = moe.moe_layers * 3 * hidden * moe.shared_intermediate
        g.small += moe.moe_layers * hidden * moe.experts
        if model_type.startswith("gpt_oss"):                  # expert biases
            g.small += moe.moe_layers * moe.experts * (3 * moe.expert_intermediate + hidden)
    else:
        g.mlp = n_layers * 3 * hidden * inter
    g.small += (2 * n_layers + 1) * hidden
    vc = top.get("vision_config")
    if isinstance(vc, Mapping):
        g.vision = _vision_params(vc, r.where, hidden)
    return g, moe


# ---------------------------------------------------------------------------
# quantization: bytes per parameter of each group
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantScheme:
    """How a checkpoint stores its quantized linear layers."""

    method: str                     # fp8 | awq | gptq | compressed-tensors | mxfp4 | nvfp4 | bitsandbytes | ...
    bytes_per_param: float          # quantized linear layers, scales included
    description: str
    keep_16bit: Tuple[str, ...] = ()  # groups left in 16 bits beyond the default (embeddings, head, small, vision)
    quantize_lm_head: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {"method": self.method, "bytes_per_param": round(self.bytes_per_param, 5),
                "description": self.description, "unquantized": ["embed", "lm_head", "norms/routers", "vision",
                                                                  *self.keep_16bit]}


def _int_q(bits: int, group: int, zero: bool, scale_bytes: int = 2) -> float:
    per = bits / 8
    if group and group > 0:
        per += scale_bytes / group + (bits / 8 / group if zero else 0)
    return per


def _ignored_groups(ignore: Sequence[str]) -> Tuple[str, ...]:
    keep: List[str] = []
    text = " ".join(str(x) for x in ignore)
    if re.search(r"self_attn|\battn\b|attention", text):
        keep.append("attn")
    if re.search(r"shared_expert", text):
        keep.append("shared")
    if re.search(r"mamba|mixer|linear_attn", text):
        keep.append("mixer")
    return tuple(keep)


def quant_scheme(qc: Mapping[str, Any], where: str) -> QuantScheme:
    """The storage of a ``quantization_config``."""
    method = str(qc.get("quant_method") or qc.get("quant_algo") or "").lower()
    ignore = [str(x) for x in (qc.get("ignore") or qc.get("modules_to_not_convert") or qc.get("exclude_modules")
                               or ()) if isinstance(x, str)]
    keep = _ignored_groups(ignore)
    r = ConfigReader(qc, where, "quantization_config.")
    if method in ("fp8", "fbgemm_fp8", "ptpc_fp8"):
        block = qc.get("weight_block_size")
        if isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block):
            return QuantScheme("fp8", 1 + 4 / (block[0] * block[1]),
                               f"fp8 weights with one fp32 scale per {block[0]}x{block[1]} block", keep)
        return QuantScheme("fp8", 1.0, "fp8 weights, per-tensor or per-channel scales", keep)
    if method in ("awq", "awq_marlin", "gptq", "gptq_marlin", "auto-round", "autoround"):
        bits = r.integer("bits", 4, minimum=1, maximum=16) or 4
        group = r.integer("group_size", 128, minimum=-1, maximum=1e6)
        group = 0 if group is None or group < 0 else group            # -1: one scale per output channel
        zero = bool(qc.get("zero_point", True))                        # GPTQ stores qzeros even when symmetric
        name = "awq" if method.startswith("awq") else "gptq" if method.startswith("gptq") else method
        return QuantScheme(name, _int_q(bits, group or 0, zero),
                           f"int{bits} weights, a 16-bit scale{' and zero' if zero else ''} per group of {group}",
                           keep)
    if method == "mxfp4":
        return QuantScheme("mxfp4", 0.5 + 1 / 32, "MXFP4: 4-bit values, one 8-bit scale per 32", keep)
    if method in ("nvfp4", "modelopt_fp4") or "nvfp4" in str(qc.get("format", "")).lower():
        return QuantScheme("nvfp4", 0.5 + 1 / 16, "NVFP4: 4-bit values, one fp8 scale per 16", keep)
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or (qc.get("quantization") or {}).get("quant_algo") or "").upper()
        if "FP4" in algo:
            return QuantScheme("nvfp4", 0.5 + 1 / 16, "NVFP4 (ModelOpt): 4-bit values, one fp8 scale per 16", keep)
        return QuantScheme("fp8", 1.0, "fp8 (ModelOpt)", keep)
    if method == "compressed-tensors":
        return _compressed_tensors(qc, where, keep)
    if method in ("bitsandbytes",):
        if qc.get("load_in_8bit"):
            return QuantScheme("bitsandbytes", 1.0, "bitsandbytes int8", keep)
        return QuantScheme("bitsandbytes", 0.5 + 4 / 64, "bitsandbytes 4-bit, one fp32 scale per 64", keep)
    if method in ("int8", "w8a8", "smoothquant"):
        return QuantScheme(method, 1.0, "int8 weights", keep)
    if method in ("int4", "w4a16", "marlin"):
        return QuantScheme(method, _int_q(4, 128, False), "int4 weights, a 16-bit scale per 128", keep)
    raise ModelFactsError(f"{where}: quantization_config.quant_method {method or '(none)'!r} is not known to the "
                          f"planner", hint="pass --weight-gib or download the model's safetensors index")


def _compressed_tensors(qc: Mapping[str, Any], where: str, keep: Tuple[str, ...]) -> QuantScheme:
    fmt = str(qc.get("format") or "").lower()
    groups = qc.get("config_groups")
    weights: Mapping[str, Any] = {}
    if isinstance(groups, Mapping):
        for grp in groups.values():
            if isinstance(grp, Mapping) and isinstance(grp.get("weights"), Mapping):
                weights = grp["weights"]
                break
    r = ConfigReader(weights, where, "quantization_config.config_groups.weights.")
    bits = r.integer("num_bits", 8, minimum=1, maximum=16) or 8
    wtype = str(weights.get("type") or "int").lower()
    strategy = str(weights.get("strategy") or "").lower()
    gs = r.integer("group_size", 0, minimum=0, maximum=1e6) or 0
    if "nvfp4" in fmt or (bits == 4 and wtype == "float"):
        return QuantScheme("nvfp4", 0.5 + 1 / 16, "NVFP4 (compressed-tensors): 4-bit values, one fp8 scale per 16",
                           keep)
    if wtype == "float" and bits == 8:
        if strategy == "block":
            return QuantScheme("fp8", 1 + 4 / (128 * 128), "fp8 (compressed-tensors, block scales)", keep)
        return QuantScheme("fp8", 1.0, "fp8 (compressed-tensors)", keep)
    zero = not bool(weights.get("symmetric", True))
    per = _int_q(bits, gs if strategy in ("group", "") and gs else 0, zero)
    return QuantScheme(f"compressed-tensors-w{bits}", per,
                       f"int{bits} (compressed-tensors{', group ' + str(gs) if gs else ''})", keep)


def weight_bytes(g: ParamGroups, scheme: Optional[QuantScheme], dtype_bytes: int) -> int:
    """Checkpoint bytes as vLLM loads them."""
    sixteen = g.embed + g.lm_head + g.small + g.vision
    linear = {"attn": g.attn, "mlp": g.mlp, "experts": g.experts, "shared": g.shared, "mixer": g.mixer}
    if scheme is None:
        return int((sixteen + sum(linear.values())) * dtype_bytes)
    total = sixteen * 2.0
    for name, n in linear.items():
        total += n * (2.0 if name in scheme.keep_16bit else scheme.bytes_per_param)
    return int(total)


def expert_bytes(g: ParamGroups, scheme: Optional[QuantScheme], dtype_bytes: int) -> int:
    if scheme is None:
        return int(g.experts * dtype_bytes)
    return int(g.experts * (2.0 if "experts" in scheme.keep_16bit else scheme.bytes_per_param))


@dataclass(frozen=True)
class Architecture:
    """What the planner needs from a config beyond the basic shape."""

    params: ParamGroups
    moe: Optional[MoE]
    layer_types: Tuple[LayerType, ...]
    quant: Optional[QuantScheme]
    weight_bytes: int
    expert_bytes: int
    notes: Tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------
# the KV cache as vLLM allocates it
# ---------------------------------------------------------------------------

def kv_group_size(types: Sequence[LayerType]) -> int:
    """Layers per KV-cache group in vLLM's hybrid allocator (several layer types share one page
    size): the smallest type's layer count, or the largest when they differ by less than 25%."""
    counts = [t.layers for t in types if t.layers > 0]
    if len(counts) <= 1:
        return counts[0] if counts else 0
    gs = min(counts)
    return max(counts) if max(counts) < gs * 1.25 else gs


def held_tokens(t: LayerType, length: int, chunk: int, block: int = 1) -> int:
    """Tokens (in whole blocks) a layer of this type keeps for one request of ``length`` tokens:
    vLLM's ``max_memory_usage_bytes`` of its full-attention, sliding-window and chunked-local specs."""
    if t.kind == SLIDING and t.window:
        n = min(length, t.window - 1 + chunk)
        return (-(-n // block) + (1 if block > 1 else 0)) * block
    # chunked local attention (Llama 4) keeps every token: vLLM turns its hybrid allocator off for it
    # by default (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1 turns it on)
    return -(-length // block) * block
