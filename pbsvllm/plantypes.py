"""The planner's value types: hardware, workload, the plan and its flags (pure data).

:mod:`pbsvllm.plan` builds a :class:`Plan` with the rules of :mod:`pbsvllm.planrules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.errors import PlanError

GIB = 2**30
DEFAULT_MAX_MODEL_LEN_CAP = 32768     # when the model's own context is longer and nothing else is said
DEFAULT_PROMPT_LEN = 1024             # expected request shape when no hint is given
DEFAULT_OUTPUT_LEN = 512
TARGET_SEQS_PER_REPLICA = 64          # below this a decode batch leaves a GPU mostly idle
ACTIVATION_FIXED_GIB = 1.0            # CUDA context, NCCL buffers, CUDA-graph pools, allocator slack
MULTIMODAL_EXTRA_GIB = 1.0            # vision encoder activations / encoder cache
WORKLOAD_LIMITS = {"max_model_len": 1e9, "concurrency": 1e7, "prompt_len": 1e9, "output_len": 1e9}
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla")


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
    def from_profile(cls, profile: Any) -> Hardware:
        return cls(
            gpus_per_node=int(profile.gpus_per_node),
            gpu_memory_gib=float(profile.gpu_memory_gib),
            interconnect=profile.interconnect,
            nodes=int(profile.nodes),
            device=profile.device,
            gpu_name=profile.gpu_name,
            cpu_kvcache_gib=float(profile.cpu_kvcache_space_gib) if profile.device == "cpu" else 4.0,
        )

    def validate(self) -> None:
        """Every number finite and sensible: one line naming the setting, never a traceback."""
        if self.device == "cpu":
            if not (math.isfinite(self.cpu_kvcache_gib) and 0 < self.cpu_kvcache_gib <= 1e5):
                raise PlanError(f"the CPU KV-cache size must be a positive number of GiB, got {self.cpu_kvcache_gib!r} "
                                f"(env.VLLM_CPU_KVCACHE_SPACE in the profile)")
            return
        if not isinstance(self.gpus_per_node, int) or not 1 <= self.gpus_per_node <= 1024:
            raise PlanError(f"--gpus (gpus_per_node) must be between 1 and 1024, got {self.gpus_per_node!r}",
                            hint="set it in the profile or pass --gpus")
        if not (math.isfinite(self.gpu_memory_gib) and 1 <= self.gpu_memory_gib <= 4096):
            raise PlanError(f"--gpu-memory (gpu_memory_gib) must be a finite number of GiB between 1 and 4096, "
                            f"got {self.gpu_memory_gib!r}", hint="set it in the profile or pass --gpu-memory")
        if not isinstance(self.nodes, int) or not 1 <= self.nodes <= 10000:
            raise PlanError(f"--nodes must be between 1 and 10000, got {self.nodes!r}")

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

    def validate(self) -> None:
        """Positive whole numbers of sensible size, named by their option; never passed on to vLLM otherwise."""
        for key, limit in WORKLOAD_LIMITS.items():
            v = getattr(self, key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit:
                raise PlanError(f"--{key.replace('_', '-')} must be a whole number between 1 and {limit:.0f}, "
                                f"got {v!r}")
        if self.kv_cache_dtype is not None and self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise PlanError(f"--kv-cache-dtype {self.kv_cache_dtype!r} is not one of {', '.join(KV_CACHE_DTYPES)}")


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
    expert_parallel: bool = False          # --enable-expert-parallel (MoE: experts sharded over TP x DP GPUs)
    kv_cache_layers: Tuple[Dict[str, Any], ...] = ()   # per layer type: what one GPU keeps

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
            "expert_parallel": self.expert_parallel,
            "kv_cache_layers": list(self.kv_cache_layers),
        }
