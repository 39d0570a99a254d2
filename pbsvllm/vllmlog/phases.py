"""Startup and shutdown phases announced by vLLM log lines."""

from __future__ import annotations

import re
from typing import Optional, Tuple

PHASES = ("starting", "loading_weights", "compiling", "kv_cache_allocated", "ready", "shutting_down")

_PHASE_RULES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("ready", ("Application startup complete",)),
    (
        "shutting_down",
        (
            "shutdown triggered",
            "Shutting down",
            "Application shutdown complete",
            "Finished server process",
            "trigger received signal",
        ),
    ),
    (
        "kv_cache_allocated",
        (
            "KV cache size:",
            "# GPU blocks:",
            "# CPU blocks:",
            "init engine (profile",
            "Maximum concurrency for",
        ),
    ),
    (
        "compiling",
        (
            "torch.compile",
            "Compiling a graph",
            "Capturing CUDA graph",
            "Capturing cudagraph",
            "Graph capturing",
            "graph capturing",
            "Warming up model for the compilation",
            "Dynamo bytecode transform",
            "Compiling model",
            "Compile for",
        ),
    ),
    (
        "loading_weights",
        (
            "Starting to load model",
            "Loading weights took",
            "Loading model weights",
            "Model loading took",
            "Loading safetensors checkpoint shards",
            "Loading pt checkpoint shards",
            "Loading weights",
        ),
    ),
    (
        "starting",
        (
            "non-default args",
            "args: Namespace(",
            "vLLM API server version",
            "vLLM server version",
            "Initializing a",
            "Started DP Coordinator",
            "Resolved architecture",
        ),
    ),
)
_BANNER_VERSION_RE = re.compile(r"[\u2580-\u259f ] version (\d+\.\d+[\w.+\-]*)")


def detect_phase(line: str) -> Optional[str]:
    """Return the phase a line announces (one of :data:`PHASES`) or ``None``."""
    for phase, needles in _PHASE_RULES:
        for n in needles:
            if n in line:
                if phase == "compiling" and "disabling torch.compile" in line:
                    break  # 0.32's "Enforce eager set, disabling torch.compile, ..." warning: no compiling
                return phase
    if " version " in line and _BANNER_VERSION_RE.search(line):
        return "starting"
    return None
