"""Error lines: what kind of failure one line shows, and whether the errors
seen so far mean the server failed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from pbsvllm.vllmlog.lines import _i, strip_line

#: Every kind :func:`classify_error` can return, most specific first.
ERROR_KINDS = (
    "cuda_oom",
    "no_cache_memory",
    "kv_cache_too_small",
    "free_memory_low",
    "port_in_use",
    "nccl",
    "cpu_attention_unsupported",
    "ray_unsupported_platform",
    "ray_cluster",
    "node_check_failed",
    "engine_init_failed",
)

_ERROR_RULES: Tuple[Tuple[str, Tuple[str, ...], Optional[re.Pattern[str]]], ...] = (
    ("cuda_oom", ("CUDA out of memory", "OutOfMemoryError", "CUDA error: out of memory"), None),
    ("no_cache_memory", ("No available memory for the cache blocks",), None),
    (
        "kv_cache_too_small",
        (
            "that can be stored in KV cache",
            "larger than the available KV cache memory",
            "To serve at least one request with the model",
        ),
        None,
    ),
    ("free_memory_low", ("Free memory on device",), None),
    ("port_in_use", ("Address already in use", "[Errno 98]"), None),
    (
        "nccl",
        ("NCCL", "nccl"),
        re.compile(
            r"NCCL error|nccl\w*Error|NCCL WARN|DistBackendError|ProcessGroupNCCL.*(?:[Tt]imeout|[Ww]atchdog|abort)"
            r"|NCCL (?:communicator|operation).*(?:fail|abort|timed out)|ncclCommInitRank failed"
        ),
    ),
    ("cpu_attention_unsupported", ("Unsupported CPU attention configuration",), None),
    # multi-node (docs/multinode.md): vLLM's Ray executor, pbsvllm's own Ray / node lines
    ("ray_unsupported_platform", ("does not support ray",), None),
    (
        "ray_cluster",
        (
            "Every node should have a unique IP address",
            "Cannot provide a placement group",
            "the Ray cluster did not reach",
            "the Ray head did not come up",
            "Failed to import Ray",
        ),
        None,
    ),
    ("node_check_failed", ("pre-launch check failed on node", "the plan needs"), re.compile(
        r"pre-launch check failed on node|the plan needs \d+ nodes but the job has")),
    (
        "engine_init_failed",
        ("Engine core initialization failed", "EngineCore failed to start", "Engine process failed to start"),
        None,
    ),
)


def classify_error(line: str) -> Optional[str]:
    """Return the error kind this one line shows (see :data:`ERROR_KINDS`),
    or ``None``. An ``EngineDeadError`` alone is not classified here: whether
    it is a failure depends on what came before (see :class:`ErrorTracker`)."""
    for kind, needles, rx in _ERROR_RULES:
        for n in needles:
            if n in line:
                if rx is None or rx.search(line):
                    return kind
                break
    return None


@dataclass
class ErrorEvent:
    kind: str
    line_no: int
    text: str

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "line": self.line_no, "text": self.text}


MAX_ERROR_EVENTS = 50


class ErrorTracker:
    """Decides whether the errors seen so far mean the server failed.

    - classified errors (:func:`classify_error`) are failures;
    - ``EngineCore encountered a fatal error`` before any shutdown is a crash;
    - an ``EngineDeadError`` that follows ``shutdown triggered`` or a received
      SIGTERM (a normal stop) is **not** a failure; one without a shutdown
      before it is a crash.
    """

    def __init__(self) -> None:
        self.events: List[ErrorEvent] = []
        self.kinds_seen: Dict[str, int] = {}
        self.shutdown_seen = False
        self.shutdown_line: Optional[int] = None
        self.crashed = False
        self.crash_line: Optional[int] = None
        self.engine_dead_after_shutdown = 0
        self.suggested_max_model_len: Optional[int] = None

    def feed(self, line: str, line_no: int, text: Optional[str] = None) -> Optional[str]:
        """Look at one line (or its message part); return an error kind when
        it shows one. ``text`` is what to quote as evidence (default: the
        line, wrappers stripped)."""
        kind = classify_error(line)
        if kind is not None:
            self.kinds_seen[kind] = self.kinds_seen.get(kind, 0) + 1
            if len(self.events) < MAX_ERROR_EVENTS:
                self.events.append(ErrorEvent(kind, line_no, (text or strip_line(line))[:1000]))
            if kind == "kv_cache_too_small" and self.suggested_max_model_len is None:
                m = _EST_MAX_LEN_RE.search(line)
                if m:
                    self.suggested_max_model_len = _i(m.group(1))
            return kind
        if "shutdown triggered" in line or "received signal=SIGTERM" in line or "received signal=SIGINT" in line:
            if not self.shutdown_seen:
                self.shutdown_seen = True
                self.shutdown_line = line_no
            return None
        if "encountered a fatal error" in line and not self.shutdown_seen:
            self._crash(text or line, line_no)
            return None
        if "EngineDeadError" in line:
            if self.shutdown_seen:
                self.engine_dead_after_shutdown += 1
            else:
                self._crash(text or line, line_no)
        return None

    def _crash(self, line: str, line_no: int) -> None:
        if not self.crashed:
            self.crashed = True
            self.crash_line = line_no
            if len(self.events) < MAX_ERROR_EVENTS:
                self.events.append(ErrorEvent("engine_crashed", line_no, strip_line(line)[:1000]))

    @property
    def root_cause(self) -> Optional[str]:
        """The most telling error seen: a specific kind beats the generic
        ``engine_init_failed``, which beats an unexplained crash."""
        specific = [e.kind for e in self.events if e.kind not in ("engine_init_failed", "engine_crashed")]
        if specific:
            return specific[0]
        if "engine_init_failed" in self.kinds_seen:
            return "engine_init_failed"
        if self.crashed:
            return "engine_crashed"
        return None

    @property
    def failed(self) -> bool:
        return self.root_cause is not None


_EST_MAX_LEN_RE = re.compile(r"estimated maximum model length is ([\d,]+)")
