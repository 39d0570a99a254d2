"""The one vLLM log parser of the project: version-tolerant, streaming, pure.

Formats are those of ``reference/vllm.md`` (vLLM 0.6 to 0.33): line layouts
with or without ``[file.py:N]`` brackets, ANSI-coloured or plain process
prefixes (``(APIServer pid=N)``, ``(EngineCore_DP0 pid=N)``,
``(VllmWorker rank=N pid=M)``), docker RFC3339 timestamps; the V0 and V1
engine-stats lines with a ``GPU``/``CPU``/other KV-cache word and optional
fields; the startup lines that reveal the configuration; the errors.

Small stable API (used by the watcher, ``status`` and ``logs --stats``):

- :func:`strip_line` -- drop ANSI codes, a docker timestamp, the process prefix.
- :func:`parse_stats_line` -- one periodic stats line -> :class:`EngineStats`.
- :func:`classify_error` -- one line -> an error kind or ``None``.
- :func:`detect_phase` -- one line -> a startup/shutdown phase or ``None``.
- :class:`ErrorTracker` -- the stateful part of error detection (an
  ``EngineDeadError`` after a normal shutdown is not a failure).
- :class:`LogScanner` -- feed lines one by one, read :class:`LogFacts`.
- :func:`parse_log` (any iterable of lines), :func:`parse_file` (fast bytes
  path for big files), :class:`LogFollower` (reads only the bytes appended
  since the last poll).

Memory is bounded whatever the log size: no list of lines is kept; the stats
time series keeps aggregates, the last value and a capped, evenly thinned
sample per engine; evidence lines are capped per kind.

Nothing here raises on odd input: a handler that trips over a line it does
not understand is counted in ``LogFacts.parse_problems`` instead.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

# ---------------------------------------------------------------------------
# Line-level helpers
# ---------------------------------------------------------------------------

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DOCKER_TS_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? +"
)
# (APIServer pid=1), (EngineCore_DP0 pid=2), (VllmWorker rank=0 pid=3),
# (VllmWorker-0 pid=4), (VLLM_DP_Coordinator pid=5), (ApiServer_0 pid=6)
_PROC_RE = re.compile(r"^\(([A-Za-z][\w\-.:]*)(?: rank=(\d+))? pid=(\d+)\) ?")
# INFO 11-21 13:28:37 config.py:1136] msg      (0.6)
# INFO 04-07 06:05:43 [core.py:54] msg         (0.7.4+)
_HEADER_RE = re.compile(
    r"^(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL) +(\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,]\d+)? +"
    r"(?:\[([^\]\s]+)\]|([^\s\]]+:\d+)\]) ?"
)


def strip_line(line: str) -> str:
    """Return ``line`` without ANSI codes, a docker RFC3339 timestamp and the
    vLLM process prefix; the level/timestamp/source header is kept."""
    if "\x1b" in line:
        line = _ANSI_RE.sub("", line)
    line = line.rstrip("\r\n")
    if line[:2].isdigit() and "T" in line[:12]:
        line = _DOCKER_TS_RE.sub("", line, count=1)
    if line.startswith("("):
        line = _PROC_RE.sub("", line, count=1)
    return line


@dataclass(frozen=True)
class LogLine:
    """One line taken apart. Every field but ``message`` may be empty."""

    process: str  # "APIServer", "EngineCore_DP0", "VllmWorker", "" ...
    rank: Optional[int]  # the DP rank from EngineCore_DP<k>, or the worker rank
    level: str  # "INFO", "WARNING", ... ("" for uvicorn/bare lines)
    time: str  # "MM-DD HH:MM:SS" (vLLM logs have no year)
    source: str  # "core.py:54"
    message: str


_DP_RE = re.compile(r"_DP(\d+)")


def split_line(line: str) -> LogLine:
    """Take a raw line apart into process, level, time, source and message."""
    if "\x1b" in line:
        line = _ANSI_RE.sub("", line)
    line = line.rstrip("\r\n")
    if line[:2].isdigit() and "T" in line[:12]:
        line = _DOCKER_TS_RE.sub("", line, count=1)
    process, rank = "", None
    m = _PROC_RE.match(line)
    if m:
        process = m.group(1)
        if m.group(2) is not None:
            rank = int(m.group(2))
        else:
            d = _DP_RE.search(process)
            if d:
                rank = int(d.group(1))
        line = line[m.end():]
    h = _HEADER_RE.match(line)
    if h:
        return LogLine(process, rank, h.group(1), h.group(2), h.group(3) or h.group(4) or "", line[h.end():])
    return LogLine(process, rank, "", "", "", line)


# ---------------------------------------------------------------------------
# Engine stats lines
# ---------------------------------------------------------------------------


class EngineStats(NamedTuple):
    """One periodic engine-stats line (V0 or V1 form). A named tuple: cheap
    to make (a 1 GB log holds millions) and immutable."""

    engine: Optional[int]  # "Engine 001:" -> 1; V0 and aggregated lines -> None
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    running: int
    waiting: int  # "Waiting" (V1) or "Pending" (V0)
    swapped: Optional[int] = None  # V0 only
    kv_cache_usage_pct: Optional[float] = None
    kv_device: str = "GPU"  # the word before "KV cache usage": GPU, CPU, XPU...
    prefix_cache_hit_pct: Optional[float] = None
    preemptions: Optional[int] = None
    cpu_kv_cache_usage_pct: Optional[float] = None  # V0's second KV figure
    deferred: Optional[int] = None
    corrupted: Optional[int] = None
    external_prefix_cache_hit_pct: Optional[float] = None
    mm_cache_hit_pct: Optional[float] = None
    engines_aggregated: Optional[int] = None  # "N Engines Aggregated:"
    raw: str = ""  # the line as given, without its newline

    def to_dict(self) -> Dict[str, Any]:
        """The fields that have a value, ``raw`` left out."""
        return {k: v for k, v in self._asdict().items() if v is not None and k != "raw"}


_NUM = r"(-?[\d,]*\.?\d+(?:[eE][-+]?\d+)?|nan|inf)"
_PROMPT_RE = re.compile(r"Avg prompt throughput: " + _NUM + " tokens/s")
_GEN_RE = re.compile(r"Avg generation throughput: " + _NUM + " tokens/s")
_ENGINE_RE = re.compile(r"Engine (\d+):")
_AGG_RE = re.compile(r"(\d+) Engines Aggregated:")
_RUNNING_RE = re.compile(r"Running: (\d+)")
_WAITING_RE = re.compile(r"(?:Waiting|Pending): (\d+)")
_SWAPPED_RE = re.compile(r"Swapped: (\d+)")
_DEFERRED_RE = re.compile(r"Deferred: (\d+)")
_CORRUPTED_RE = re.compile(r"Corrupted: (\d+)")
_PREEMPT_RE = re.compile(r"Preemptions: (\d+)")
_KV_USAGE_RE = re.compile(r"(\w+) KV cache usage: " + _NUM + "%")
_PREFIX_RE = re.compile(r"(?<![Ee]xternal )[Pp]refix cache hit rate: " + _NUM + "%")
_EXT_PREFIX_RE = re.compile(r"External prefix cache hit rate: " + _NUM + "%")
_MM_RE = re.compile(r"MM cache hit rate: " + _NUM + "%")
_V0_PREFIX_RE = re.compile(r"Prefix cache hit rate: (?:GPU: )?" + _NUM + "%")


def _f(s: str) -> float:
    return float(s.replace(",", ""))


def _i(s: str) -> int:
    return int(s.replace(",", ""))


# The common V1 shape (0.8 to 0.33, one engine or "Engine NNN:"), parsed by
# one regex; every other shape takes the general, field-by-field path.
_FAST_STATS = (
    r"Avg prompt throughput: ([\d.,]+) tokens/s, Avg generation throughput: ([\d.,]+) tokens/s, "
    r"Running: (\d+) reqs, Waiting: (\d+) reqs, (\w+) KV cache usage: ([\d.]+)%"
    r"(?:, Prefix cache hit rate: ([\d.]+)%)?\r?$"
)
_FAST_STATS_RE = re.compile(_FAST_STATS)
# bytes form: every stats line matches; group 1 is None unless it has the
# common shape
_FAST_STATS_BRE = re.compile(b"Avg prompt throughput: (?:" + _FAST_STATS[len("Avg prompt throughput: "):].encode() + b")?", re.M)
_ENGINE_BRE = re.compile(rb"Engine (\d+):")


def parse_stats_line(line: str) -> Optional[EngineStats]:
    """Parse a periodic engine-stats line; ``None`` for any other line.

    Accepts V0 (``Running/Swapped/Pending``, GPU and CPU KV usage), V1
    (``Engine 000:``, ``Waiting``, ``Prefix cache hit rate``), the optional
    parts of later versions (``Deferred``, ``Preemptions``, ``Corrupted``,
    ``External prefix``/``MM cache hit rate``, ``KV fetch``), any device word
    before ``KV cache usage`` and the ``N Engines Aggregated:`` prefix.
    """
    if "throughput:" not in line:
        return None
    line = line.rstrip("\r\n")
    try:
        fm = _FAST_STATS_RE.search(line)
        if fm is not None:
            head = line[: fm.start()]
            e = _ENGINE_RE.search(head)
            if e is not None or "Engines Aggregated" not in head:
                pre = fm.group(7)
                return EngineStats(
                    int(e.group(1)) if e is not None else None,
                    _f(fm.group(1)),
                    _f(fm.group(2)),
                    int(fm.group(3)),
                    int(fm.group(4)),
                    None,
                    float(fm.group(6)),
                    fm.group(5),
                    float(pre) if pre is not None else None,
                    raw=line,
                )
        p = _PROMPT_RE.search(line)
        g = _GEN_RE.search(line)
        if not p or not g:
            return None
        r = _RUNNING_RE.search(line, g.end())
        w = _WAITING_RE.search(line, g.end())
        if not r or not w:
            return None
        engine: Optional[int] = None
        agg: Optional[int] = None
        head = line[: p.start()]
        e = _ENGINE_RE.search(head)
        if e:
            engine = int(e.group(1))
        else:
            a = _AGG_RE.search(head)
            if a:
                agg = int(a.group(1))
        kv_device, kv_pct, cpu_pct = "GPU", None, None
        for k in _KV_USAGE_RE.finditer(line, g.end()):
            if kv_pct is None:
                kv_device, kv_pct = k.group(1), _f(k.group(2))
            elif k.group(1) == "CPU" and kv_device != "CPU":
                cpu_pct = _f(k.group(2))
        tail = line[g.end():]
        pre = _PREFIX_RE.search(tail)
        sw = _SWAPPED_RE.search(tail)
        de = _DEFERRED_RE.search(tail)
        co = _CORRUPTED_RE.search(tail)
        pm = _PREEMPT_RE.search(tail)
        ex = _EXT_PREFIX_RE.search(tail)
        mm = _MM_RE.search(tail)
        return EngineStats(
            engine=engine,
            prompt_tokens_per_s=_f(p.group(1)),
            generation_tokens_per_s=_f(g.group(1)),
            running=int(r.group(1)),
            waiting=int(w.group(1)),
            swapped=int(sw.group(1)) if sw else None,
            kv_cache_usage_pct=kv_pct,
            kv_device=kv_device,
            prefix_cache_hit_pct=_f(pre.group(1)) if pre else None,
            preemptions=int(pm.group(1)) if pm else None,
            cpu_kv_cache_usage_pct=cpu_pct,
            deferred=int(de.group(1)) if de else None,
            corrupted=int(co.group(1)) if co else None,
            external_prefix_cache_hit_pct=_f(ex.group(1)) if ex else None,
            mm_cache_hit_pct=_f(mm.group(1)) if mm else None,
            engines_aggregated=agg,
            raw=line,
        )
    except (ValueError, OverflowError):
        return None


# ---------------------------------------------------------------------------
# Errors and phases
# ---------------------------------------------------------------------------

#: Every kind :func:`classify_error` can return, most specific first.
ERROR_KINDS = (
    "cuda_oom",
    "no_cache_memory",
    "kv_cache_too_small",
    "free_memory_low",
    "port_in_use",
    "nccl",
    "cpu_attention_unsupported",
    "engine_init_failed",
)

_ERROR_RULES: Tuple[Tuple[str, Tuple[str, ...], Optional["re.Pattern[str]"]], ...] = (
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


# ---------------------------------------------------------------------------
# Python-literal reprs (config line, non-default args, Namespace)
# ---------------------------------------------------------------------------


def _split_top(s: str, sep: str = ",") -> List[str]:
    """Split at ``sep`` outside brackets and quotes (tolerates truncation)."""
    parts: List[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([{<":
            depth += 1
        elif c in ")]}>":
            if depth > 0:
                depth -= 1
        elif c == sep and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
        i += 1
    tail = s[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def _literal(v: str) -> Any:
    v = v.strip()
    if not v:
        return v
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return v


def parse_kv_repr(s: str) -> Dict[str, Any]:
    """``a=1, b='x', c=torch.bfloat16`` -> dict (non-literals kept as text)."""
    out: Dict[str, Any] = {}
    for part in _split_top(s):
        k, eq, v = part.partition("=")
        k = k.strip()
        if eq and k.isidentifier():
            out[k] = _literal(v)
    return out


def parse_dict_repr(s: str) -> Dict[str, Any]:
    """``{'host': '0.0.0.0', 'port': 8011, ...}`` -> dict, safely.

    ``ast.literal_eval`` first; when the text is truncated or holds a
    non-literal, fall back to splitting the pairs one by one."""
    s = s.strip()
    try:
        v = ast.literal_eval(s)
        if isinstance(v, dict):
            return {str(k): val for k, val in v.items()}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if s.startswith("{"):
        s = s[1:]
    if s.endswith("}"):
        s = s[:-1]
    out: Dict[str, Any] = {}
    for part in _split_top(s):
        k, colon, v = part.partition(":")
        if not colon:
            continue
        key = _literal(k)
        if isinstance(key, str) and key.isidentifier():
            out[key] = _literal(v)
    return out


# ---------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------

SAMPLE_CAP = 256
EVIDENCE_CAP = 5


@dataclass
class StatsSample:
    line_no: int
    stats: EngineStats


class StatsSeries:
    """Bounded time series of one engine's stats lines: aggregates, last
    value, the lines with the peaks, and an evenly thinned sample."""

    def __init__(self, cap: int = SAMPLE_CAP) -> None:
        self.cap = cap
        self.count = 0
        self.busy_count = 0  # lines with running > 0 or non-zero throughput
        self.first: Optional[StatsSample] = None
        self.last: Optional[StatsSample] = None
        self.sum_gen = 0.0
        self.busy_sum_gen = 0.0
        self.busy_sum_prompt = 0.0
        self.busy_sum_running = 0
        self.busy_sum_kv = 0.0
        self.busy_kv_count = 0
        self.max_running: Optional[StatsSample] = None
        self.max_waiting: Optional[StatsSample] = None
        self.max_kv: Optional[StatsSample] = None
        self.max_gen: Optional[StatsSample] = None
        self._max_running = -1
        self._max_waiting = -1
        self._max_kv = -1.0
        self._max_gen = -1.0
        self.preemptions_total = 0
        self.prefix_sum = 0.0
        self.prefix_count = 0
        self.prefix_busy_sum = 0.0
        self.prefix_busy_count = 0
        self.waiting_lines = 0  # lines with waiting > 0
        self.kv_device = ""
        self.sample: List[StatsSample] = []
        self._stride = 1

    def add(self, s: EngineStats, line_no: int) -> None:
        item = StatsSample(line_no, s)
        self.count += 1
        if self.first is None:
            self.first = item
            self.kv_device = s.kv_device
        self.last = item
        gen = s.generation_tokens_per_s
        running = s.running
        kv = s.kv_cache_usage_pct
        busy = running > 0 or gen > 0 or s.prompt_tokens_per_s > 0
        self.sum_gen += gen
        if busy:
            self.busy_count += 1
            self.busy_sum_gen += gen
            self.busy_sum_prompt += s.prompt_tokens_per_s
            self.busy_sum_running += running
            if kv is not None:
                self.busy_sum_kv += kv
                self.busy_kv_count += 1
        if running > self._max_running:
            self._max_running = running
            self.max_running = item
        if s.waiting > 0:
            self.waiting_lines += 1
        if s.waiting > self._max_waiting:
            self._max_waiting = s.waiting
            self.max_waiting = item
        if kv is not None and kv > self._max_kv:
            self._max_kv = kv
            self.max_kv = item
        if gen > self._max_gen:
            self._max_gen = gen
            self.max_gen = item
        if s.preemptions:
            self.preemptions_total += s.preemptions
        if s.prefix_cache_hit_pct is not None:
            self.add_prefix(s.prefix_cache_hit_pct, busy)
        if (self.count - 1) % self._stride == 0:
            self.sample.append(item)
            if len(self.sample) > self.cap:
                self.sample = self.sample[::2]
                self._stride *= 2

    def add_prefix(self, pct: float, busy: bool = True) -> None:
        self.prefix_sum += pct
        self.prefix_count += 1
        if busy:
            self.prefix_busy_sum += pct
            self.prefix_busy_count += 1

    def summary(self) -> Dict[str, Any]:
        def mean(total: float, n: int) -> Optional[float]:
            return round(total / n, 3) if n else None

        d: Dict[str, Any] = {
            "lines": self.count,
            "busy_lines": self.busy_count,
            "kv_device": self.kv_device,
            "mean_generation_tokens_per_s": mean(self.sum_gen, self.count),
            "mean_busy_generation_tokens_per_s": mean(self.busy_sum_gen, self.busy_count),
            "mean_busy_prompt_tokens_per_s": mean(self.busy_sum_prompt, self.busy_count),
            "mean_busy_running": mean(self.busy_sum_running, self.busy_count),
            "mean_busy_kv_cache_usage_pct": mean(self.busy_sum_kv, self.busy_kv_count),
            "max_running": self.max_running.stats.running if self.max_running else None,
            "max_waiting": self.max_waiting.stats.waiting if self.max_waiting else None,
            "max_kv_cache_usage_pct": self.max_kv.stats.kv_cache_usage_pct if self.max_kv else None,
            "max_generation_tokens_per_s": self.max_gen.stats.generation_tokens_per_s if self.max_gen else None,
            "lines_with_waiting": self.waiting_lines,
            "preemptions_total": self.preemptions_total,
            "mean_prefix_cache_hit_pct": mean(self.prefix_sum, self.prefix_count),
            "mean_busy_prefix_cache_hit_pct": mean(self.prefix_busy_sum, self.prefix_busy_count),
        }
        if self.last:
            d["last"] = self.last.stats.to_dict()
            d["last_line"] = self.last.line_no
        return d


@dataclass
class LogFacts:
    """What a vLLM log shows. ``None`` means the log does not say."""

    lines: int = 0
    vllm_version: Optional[str] = None
    engine_version: Optional[str] = None  # "V0" / "V1"
    model: Optional[str] = None
    served_model_name: Optional[str] = None
    # the user's flags: 'non-default args' (>=0.10.2) or the whole Namespace (<=0.9)
    args: Dict[str, Any] = field(default_factory=dict)
    args_source: Optional[str] = None  # "non_default_args" | "namespace"
    # the engine config line, parsed (only scalar keys kept)
    engine_config: Dict[str, Any] = field(default_factory=dict)
    tensor_parallel_size: Optional[int] = None
    pipeline_parallel_size: Optional[int] = None
    data_parallel_size: Optional[int] = None
    enforce_eager: Optional[bool] = None
    max_model_len: Optional[int] = None
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    gpu_memory_utilization: Optional[float] = None
    dtype: Optional[str] = None
    kv_cache_dtype: Optional[str] = None
    quantization: Optional[str] = None
    enable_prefix_caching: Optional[bool] = None
    enable_chunked_prefill: Optional[bool] = None
    api_server_count: Optional[int] = None
    device: Optional[str] = None  # "cuda", "cpu"... from the config line
    platform_hint: Optional[str] = None  # "cpu"/"cuda" from the source files that log (cpu_worker.py...)
    block_size: Optional[int] = None
    # KV cache
    kv_cache_tokens: Optional[int] = None  # per engine (first engine reporting)
    kv_cache_tokens_by_engine: Dict[int, int] = field(default_factory=dict)
    kv_cache_device: Optional[str] = None
    max_concurrency: Optional[float] = None
    max_concurrency_tokens_per_request: Optional[int] = None
    gpu_blocks: Optional[int] = None
    cpu_blocks: Optional[int] = None
    available_kv_cache_gib: Optional[float] = None
    # model load / init
    model_load_gib: Optional[float] = None
    model_load_seconds: Optional[float] = None
    graph_capture_seconds: Optional[float] = None
    graph_capture_gib: Optional[float] = None
    compile_seconds: Optional[float] = None
    init_engine_seconds: Optional[float] = None
    # warnings
    custom_allreduce_pcie_warning: bool = False
    custom_allreduce_disabled_reason: Optional[str] = None
    cudagraph_disabled: bool = False
    stats_logging_disabled: bool = False  # more than one API server
    # runtime
    engine_stats_lines: int = 0
    stats: Dict[str, StatsSeries] = field(default_factory=dict)  # "0", "1"... or "all"
    last_stats: Optional[EngineStats] = None
    v0_preemption_warnings: int = 0
    phases: Dict[str, int] = field(default_factory=dict)  # phase -> first line number
    phase: Optional[str] = None  # the latest phase seen
    server_starts: int = 0
    ready_count: int = 0
    errors: ErrorTracker = field(default_factory=ErrorTracker)
    evidence: Dict[str, List[Tuple[int, str]]] = field(default_factory=dict)
    parse_problems: int = 0
    first_parse_problem: Optional[str] = None

    # ---- derived -------------------------------------------------------
    @property
    def error(self) -> Optional[str]:
        return self.errors.root_cause

    @property
    def last_kv_cache_usage_pct(self) -> Optional[float]:
        return self.last_stats.kv_cache_usage_pct if self.last_stats else None

    def engines(self) -> List[str]:
        return sorted(self.stats)

    def add_evidence(self, key: str, line_no: int, text: str) -> None:
        lst = self.evidence.setdefault(key, [])
        if len(lst) < EVIDENCE_CAP:
            lst.append((line_no, text[:1000]))

    def first_evidence(self, key: str) -> Optional[Tuple[int, str]]:
        lst = self.evidence.get(key)
        return lst[0] if lst else None

    def to_json_facts(self) -> Dict[str, Any]:
        """The ``facts`` object of ``doctor --format json``: the issue's key
        names, each present only when the log shows it (``error`` always)."""
        d: Dict[str, Any] = {}

        def put(k: str, v: Any) -> None:
            if v is not None:
                d[k] = v

        put("vllm_version", self.vllm_version)
        put("engine_version", self.engine_version)
        put("model", self.model)
        put("served_model_name", self.served_model_name)
        put("tensor_parallel_size", self.tensor_parallel_size)
        put("pipeline_parallel_size", self.pipeline_parallel_size)
        put("data_parallel_size", self.data_parallel_size)
        put("enforce_eager", self.enforce_eager)
        put("max_num_seqs", self.max_num_seqs)
        put("max_num_batched_tokens", self.max_num_batched_tokens)
        put("gpu_memory_utilization", self.gpu_memory_utilization)
        put("max_model_len", self.max_model_len)
        put("dtype", self.dtype)
        put("kv_cache_dtype", self.kv_cache_dtype)
        put("quantization", self.quantization)
        put("enable_prefix_caching", self.enable_prefix_caching)
        put("enable_chunked_prefill", self.enable_chunked_prefill)
        put("api_server_count", self.api_server_count)
        put("kv_cache_tokens", self.kv_cache_tokens)
        put("kv_cache_device", self.kv_cache_device)
        put("max_concurrency", self.max_concurrency)
        put("max_concurrency_tokens_per_request", self.max_concurrency_tokens_per_request)
        put("available_kv_cache_gib", self.available_kv_cache_gib)
        put("model_load_gib", self.model_load_gib)
        put("model_load_seconds", self.model_load_seconds)
        put("init_engine_seconds", self.init_engine_seconds)
        d["custom_allreduce_pcie_warning"] = self.custom_allreduce_pcie_warning
        d["engine_stats_lines"] = self.engine_stats_lines
        put("last_kv_cache_usage_pct", self.last_kv_cache_usage_pct)
        if self.stats_logging_disabled:
            d["stats_logging_disabled"] = True
        d["error"] = self.error
        if self.errors.suggested_max_model_len is not None:
            d["suggested_max_model_len"] = self.errors.suggested_max_model_len
        put("phase", self.phase)
        if self.server_starts > 1:
            d["server_starts"] = self.server_starts
        return d


# ---------------------------------------------------------------------------
# The streaming scanner
# ---------------------------------------------------------------------------

_CFG_VERSION_RE = re.compile(r"LLM engine \(v([^)\s]+)\)")
_SERVER_VERSION_RE = re.compile(r"vLLM (?:API )?server version:? v?(\d+\.\d+[\w.+\-]*)")
_SERVING_MODEL_RE = re.compile(r"serving model (\S+)")
_BANNER_MODEL_RE = re.compile(r"[\u2580-\u259f ] model +(\S+)")
_CHUNKED_RE = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=([\d,]+)")
_MAX_MODEL_LEN_RE = re.compile(r"Using max model len ([\d,]+)")
_KV_SIZE_RE = re.compile(r"(\w+) KV cache size: ([\d,]+) tokens")
_MAX_CONC_RE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d,]*\.?\d+)x")
_BLOCKS_RE = re.compile(r"# GPU blocks: ([\d,]+), # CPU blocks: ([\d,]+)")
_GPU_BLOCKS_RE = re.compile(r"# (\w+) blocks: ([\d,]+)")
_AVAIL_KV_RE = re.compile(r"Available KV cache memory: ([\d.]+) ?GiB")
_CPU_KV_SET_RE = re.compile(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache")
_LOAD_RE = re.compile(r"Model loading took ([\d.]+) ?GiB(?: memory)? and ([\d.]+) ?s")
_LOAD_V0_RE = re.compile(r"Loading model weights took ([\d.]+) ?GB")
_GRAPH_RE = re.compile(r"Graph capturing finished in ([\d.]+) secs?, took ([\d.\-]+) GiB")
_COMPILE_RE = re.compile(r"torch\.compile takes ([\d.]+) s in total")
_INIT_RE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) ?s")
_API_COUNT_RE = re.compile(r"api_server_count to data_parallel_size \((\d+)\)")

#: Substrings that make a line worth looking at once startup is over. The
#: fast file path (:func:`scan_bytes`) searches exactly these with
#: ``bytes.find``; the line path checks the same ones, so both give the same
#: facts.
STEADY_KEYWORDS = (
    "Avg prompt throughput: ",  # every stats line, V0 and V1
    "rror",  # exceptions: OutOfMemoryError, OSError, EngineDeadError, "CUDA error: out of memory"...
    "hutdown",  # shutdown triggered / Application shutdown complete
    "with config",  # a restart: the engine config line
    "non-default args",  # a restart (>= 0.10.2)
    "Namespace(",  # a restart (<= 0.9: args: Namespace(...))
    "Prefix cache hit rate: GPU",  # V0's second stats line
    "preempted by",  # V0 preemption warnings
)


def steady_keywords(facts: "LogFacts") -> Tuple[str, ...]:
    """The :data:`STEADY_KEYWORDS` that can occur in this server's log: the
    V0-only lines are left out for a V1 engine, the other version's restart
    line for a known version. Fewer keywords, fewer passes over a big file."""
    v: Optional[Tuple[int, ...]] = None
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", facts.vllm_version or "")
    if m:
        v = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    out = ["Avg prompt throughput: ", "rror", "hutdown", "with config"]
    if v is None or v >= (0, 10, 0):
        out.append("non-default args")
    if v is None or v < (0, 10, 2):
        out.append("Namespace(")
    if facts.engine_version != "V1":
        out += ["Prefix cache hit rate: GPU", "preempted by"]
    return tuple(out)


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _to_int(v: Any) -> Optional[int]:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return _i(v)
        except ValueError:
            return None
    return None


def _to_bool(v: Any) -> Optional[bool]:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v in ("True", "False"):
        return v == "True"
    return None


def _to_float(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _clean_dtype(v: Any) -> Optional[str]:
    if v is None:
        return None
    s = str(v)
    if s.startswith("torch."):
        s = s[6:]
    return s or None


# Every substring any handler of LogScanner._examine looks for (errors,
# phases, config, KV, timings, warnings): a line holding none is skipped
# without being taken apart. tests/test_vllmlog.py checks the samples give
# the same facts with the prefilter off.
_HANDLER_NEEDLES = (
    "EngineDeadError",
    "fatal error",
    "shutdown triggered",
    "received signal",
    "Prefix cache hit rate",
    "with config:",
    "non-default args:",
    "args: Namespace(",
    "version",
    " model ",
    "KV cache",
    "blocks:",
    "Maximum concurrency",
    "took",
    "Chunked prefill is enabled",
    "Using max model len",
    "llreduce",
    "Cudagraph is disabled",
    "Enforce eager set",
    "CUDA graph is disabled",
    "disabling stats logging",
    "Defaulting api_server_count",
    "preempted by",
    "EngineCore_DP",
    "cpu.py:",
    "cpu_worker.py:",
    "cpu_model_runner.py:",
    "gpu_worker.py:",
    "gpu_model_runner.py:",
    "cuda.py:",
)
_PLATFORM_SOURCES = (
    ("cpu.py:", "cpu"),
    ("cpu_worker.py:", "cpu"),
    ("cpu_model_runner.py:", "cpu"),
    ("gpu_worker.py:", "cuda"),
    ("gpu_model_runner.py:", "cuda"),
    ("cuda.py:", "cuda"),
)
_ALL_NEEDLES = sorted(
    set(_HANDLER_NEEDLES)
    | {n for _, needles, _ in _ERROR_RULES for n in needles}
    | {n for _, needles in _PHASE_RULES for n in needles},
    key=len,
    reverse=True,
)


def _trie_regex(words: List[str]) -> str:
    """One regex matching any of ``words``, factored by common prefixes (a
    trie), so the engine tries one branch per position instead of all."""
    trie: Dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: Dict[str, Any]) -> str:
        if "" in node:
            return ""  # a shorter word ends here: matching it is enough for a prefilter
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return build(trie)


_PREFILTER_RE = re.compile(_trie_regex(_ALL_NEEDLES))


class LogScanner:
    """Feed vLLM log lines in order; read :attr:`facts` at any time.

    Until the server is up (``Application startup complete.`` or the first
    stats line) every line is examined; after that only lines that hold one
    of :data:`STEADY_KEYWORDS` (stats, errors, shutdown, a restart), which is
    what keeps a multi-GB log fast to read.
    """

    def __init__(self) -> None:
        self.facts = LogFacts()
        self._steady = False
        self.steady_kw: Tuple[str, ...] = STEADY_KEYWORDS
        self.steady_bytes: Tuple[bytes, ...] = ()
        self._series_by_digits: Dict[bytes, Tuple[int, str, "StatsSeries"]] = {}
        self._last_stats_key: Optional[str] = None
        self._last_stats_busy = False

    @property
    def steady(self) -> bool:
        """True once the server is up: only lines holding :attr:`steady_kw`
        are examined from then on."""
        return self._steady

    @steady.setter
    def steady(self, value: bool) -> None:
        if value and not self._steady:
            self.steady_kw = steady_keywords(self.facts)
            # the bytes path finds stats lines with one regex, the rest with bytes.find
            self.steady_bytes = tuple(k.encode() for k in self.steady_kw[1:])
        self._steady = value

    # -- public -----------------------------------------------------------
    def feed(self, line: str, line_no: Optional[int] = None) -> None:
        """Examine one line (with or without its newline)."""
        f = self.facts
        if line_no is None:
            line_no = f.lines + 1
        if line_no > f.lines:
            f.lines = line_no
        if self._steady:
            for k in self.steady_kw:
                if k in line:
                    break
            else:
                return
        try:
            self._examine(line, line_no)
        except Exception as exc:  # a parser that stops on odd text is worse than a miss
            f.parse_problems += 1
            if f.first_parse_problem is None:
                f.first_parse_problem = f"line {line_no}: {type(exc).__name__}: {exc}"

    def feed_stats(self, st: EngineStats, line_no: int) -> None:
        """Record a stats line parsed elsewhere (the fast bytes path)."""
        if line_no > self.facts.lines:
            self.facts.lines = line_no
        self._add_stats(st, line_no)

    def add_stats_rows(self, data: bytes, rows: List[Tuple[Optional[int], Any]], base_pos: int,
                       base_line: int) -> None:
        """Record common-shape ``Engine NNN:`` stats lines found by the bytes
        path: ``(line start or None, match)`` in file order; the line starting at
        ``base_pos`` (<= every start) is line ``base_line``. The same result
        as :meth:`_add_stats` line by line, without building an
        :class:`EngineStats` or counting the line number for the lines no
        aggregate keeps (most)."""
        f = self.facts
        stats = f.stats
        lasts: Dict[str, Tuple[int, Any]] = {}
        key = ""
        busy = False
        top_engine = -1
        count = data.count
        at_pos, at_line = base_pos, base_line

        def make(st: Optional[int], m: Any) -> StatsSample:
            nonlocal at_pos, at_line
            if st is None:
                st = data.rfind(b"\n", 0, m.start()) + 1
            # count from the previous line asked for (mostly just before this one)
            if st >= at_pos:
                at_line += count(b"\n", at_pos, st)
            else:
                at_line -= count(b"\n", st, at_pos)
            at_pos = st
            pt, gt, run, wait, dev, kv, pre = m.groups()
            eng = int(data[m.start() - 5 : m.start() - 2])
            return StatsSample(at_line, EngineStats(
                eng, float(pt.replace(b",", b"")), float(gt.replace(b",", b"")), int(run), int(wait), None,
                float(kv), dev.decode(), float(pre) if pre is not None else None,
                raw=data[st:m.end()].decode("utf-8", "replace").rstrip("\r")))

        by_digits = self._series_by_digits
        # group by engine (file order kept within each), then run each engine's rows on local variables
        groups: Dict[bytes, List[Tuple[int, Any]]] = {}
        for row in rows:
            m = row[1]
            at = m.start()
            digits = data[at - 5 : at - 2]
            g = groups.get(digits)
            if g is None:
                groups[digits] = [row]
            else:
                g.append(row)
        for digits, grows in groups.items():
            hit = by_digits.get(digits)
            if hit is None or stats.get(hit[1]) is not hit[2]:
                eng = int(digits)
                k = str(eng)
                ser = stats.get(k)
                if ser is None:
                    ser = stats[k] = StatsSeries()
                hit = by_digits[digits] = (eng, k, ser)
            eng, k, ser = hit
            if eng > top_engine:
                top_engine = eng
            n = ser.count
            sum_gen = ser.sum_gen
            busy_count = ser.busy_count
            b_gen, b_prompt, b_run, b_kv, b_kvn = (ser.busy_sum_gen, ser.busy_sum_prompt, ser.busy_sum_running,
                                                   ser.busy_sum_kv, ser.busy_kv_count)
            max_run, max_wait, max_kv, max_gen = ser._max_running, ser._max_waiting, ser._max_kv, ser._max_gen
            waiting_lines = ser.waiting_lines
            p_sum, p_n, p_bsum, p_bn = ser.prefix_sum, ser.prefix_count, ser.prefix_busy_sum, ser.prefix_busy_count
            stride = ser._stride
            sample = ser.sample
            cap = ser.cap
            busy = False
            for st, m in grows:
                pt, gt, run, wait, dev, kv_b, pre_b = m.groups()
                prompt = float(pt) if b"," not in pt else float(pt.replace(b",", b""))
                gen = float(gt) if b"," not in gt else float(gt.replace(b",", b""))
                running = int(run)
                waiting = int(wait)
                kv = float(kv_b)
                busy = running > 0 or gen > 0 or prompt > 0
                n += 1
                if ser.first is None:
                    ser.first = make(st, m)
                    ser.kv_device = ser.first.stats.kv_device
                sum_gen += gen
                if busy:
                    busy_count += 1
                    b_gen += gen
                    b_prompt += prompt
                    b_run += running
                    b_kv += kv
                    b_kvn += 1
                if running > max_run:
                    max_run = running
                    ser.max_running = make(st, m)
                if waiting > 0:
                    waiting_lines += 1
                    if waiting > max_wait:
                        max_wait = waiting
                        ser.max_waiting = make(st, m)
                elif max_wait < 0:
                    max_wait = waiting
                    ser.max_waiting = make(st, m)
                if kv > max_kv:
                    max_kv = kv
                    ser.max_kv = make(st, m)
                if gen > max_gen:
                    max_gen = gen
                    ser.max_gen = make(st, m)
                if pre_b is not None:
                    pct = float(pre_b)
                    p_sum += pct
                    p_n += 1
                    if busy:
                        p_bsum += pct
                        p_bn += 1
                if (n - 1) % stride == 0:
                    sample.append(make(st, m))
                    if len(sample) > cap:
                        sample = sample[::2]
                        stride *= 2
            ser.count = n
            ser.sum_gen = sum_gen
            ser.busy_count = busy_count
            (ser.busy_sum_gen, ser.busy_sum_prompt, ser.busy_sum_running, ser.busy_sum_kv,
             ser.busy_kv_count) = b_gen, b_prompt, b_run, b_kv, b_kvn
            ser._max_running, ser._max_waiting, ser._max_kv, ser._max_gen = max_run, max_wait, max_kv, max_gen
            ser.waiting_lines = waiting_lines
            ser.prefix_sum, ser.prefix_count, ser.prefix_busy_sum, ser.prefix_busy_count = p_sum, p_n, p_bsum, p_bn
            ser._stride = stride
            ser.sample = sample
            lasts[k] = grows[-1]
        # the stats line that came last in the file decides what "last" means across engines
        st_last, m_last = rows[-1]
        key = str(int(data[m_last.start() - 5 : m_last.start() - 2]))
        gl = m_last.groups()
        busy = int(gl[2]) > 0 or float(gl[1].replace(b",", b"")) > 0 or float(gl[0].replace(b",", b"")) > 0
        last_item = None
        for k, (st, m) in sorted(lasts.items(), key=lambda kv: kv[1][1].start()):
            item = make(st, m)
            stats[k].last = item
            if k == key:
                last_item = item
        f.engine_stats_lines += len(rows)
        if last_item is not None:
            if last_item.line_no > f.lines:
                f.lines = last_item.line_no
            f.last_stats = last_item.stats
            if f.kv_cache_device is None:
                f.kv_cache_device = rows[0][1].group(5).decode()
        self._last_stats_key = key
        self._last_stats_busy = busy
        if top_engine >= 1 and (f.data_parallel_size is None or f.data_parallel_size < top_engine + 1):
            f.data_parallel_size = top_engine + 1
        self.steady = True

    def advance_to(self, line_no: int) -> None:
        """Record that lines up to ``line_no`` were read (skipped ones too)."""
        if line_no > self.facts.lines:
            self.facts.lines = line_no

    # -- internals --------------------------------------------------------
    def _examine(self, raw: str, line_no: int) -> None:
        f = self.facts
        # stats lines first: by far the most frequent interesting line
        if "throughput:" in raw:
            st = parse_stats_line(raw)
            if st is not None:
                self._add_stats(st, line_no)
                return
        if _PREFILTER_RE.search(raw) is None:
            return
        ll = split_line(raw)
        msg = ll.message
        if not msg:
            return
        text = strip_line(raw)

        # errors first: they matter most and a line may also be a phase line
        kind = f.errors.feed(msg, line_no, text)
        if kind is not None:
            f.add_evidence("error:" + kind, line_no, text)
        elif "EngineDeadError" in msg or "encountered a fatal error" in msg:
            f.add_evidence("engine_dead", line_no, text)

        phase = detect_phase(msg)
        if phase is not None:
            if phase not in f.phases:
                f.phases[phase] = line_no
            f.phase = phase
            if phase == "ready":
                f.ready_count += 1
                f.add_evidence("ready", line_no, text)
                self.steady = True
            elif phase == "shutting_down":
                f.add_evidence("shutdown", line_no, text)

        if "Prefix cache hit rate: GPU" in msg or (
            msg.startswith("Prefix cache hit rate:") and self._last_stats_key is not None
        ):
            m = _V0_PREFIX_RE.search(msg)
            if m and self._last_stats_key is not None:
                f.stats[self._last_stats_key].add_prefix(_f(m.group(1)), self._last_stats_busy)
            return

        if "with config:" in msg:
            self._config_line(msg, line_no, text)
        elif "non-default args:" in msg:
            self._args_dict(msg, line_no, text)
        elif "args: Namespace(" in msg:
            self._args_namespace(msg, line_no, text)

        if "version" in msg:
            m = _SERVER_VERSION_RE.search(msg) or _BANNER_VERSION_RE.search(msg)
            if m:
                f.vllm_version = m.group(1)
                f.add_evidence("version", line_no, text)
            m2 = _SERVING_MODEL_RE.search(msg)
            if m2 and f.model is None:
                f.model = m2.group(1)
        if " model " in msg and f.model is None:
            m = _BANNER_MODEL_RE.search(msg)
            if m:
                f.model = m.group(1)

        if "KV cache" in msg or "blocks:" in msg or "Maximum concurrency" in msg:
            self._kv_lines(msg, line_no, text, ll)
        if "took" in msg or "torch.compile takes" in msg:
            self._timings(msg, line_no, text)
        if "Chunked prefill is enabled" in msg:
            m = _CHUNKED_RE.search(msg)
            if m:
                f.enable_chunked_prefill = True
                if "max_num_batched_tokens" not in f.args:
                    f.max_num_batched_tokens = _i(m.group(1))
                f.add_evidence("chunked_prefill", line_no, text)
        if "Using max model len" in msg:
            m = _MAX_MODEL_LEN_RE.search(msg)
            if m:
                f.max_model_len = _i(m.group(1))
                f.add_evidence("max_model_len", line_no, text)
        if "llreduce" in msg and "disabled" in msg:
            self._allreduce(msg, line_no, text)
        if "Cudagraph is disabled" in msg or "Enforce eager set" in msg or "CUDA graph is disabled" in msg:
            f.cudagraph_disabled = True
            f.add_evidence("eager", line_no, text)
        if "disabling stats logging" in msg:
            f.stats_logging_disabled = True
            f.add_evidence("stats_disabled", line_no, text)
        if "Defaulting api_server_count" in msg:
            m = _API_COUNT_RE.search(msg)
            if m:
                f.api_server_count = int(m.group(1))
        if "preempted by" in msg and "KV cache" in msg:
            f.v0_preemption_warnings += 1
            f.add_evidence("preemption", line_no, text)
        if f.platform_hint is None and ll.source:
            for src, plat in _PLATFORM_SOURCES:
                if ll.source.startswith(src):
                    f.platform_hint = plat
                    break
        if ll.process.startswith("EngineCore_DP") and ll.rank is not None:
            n = ll.rank + 1
            if f.data_parallel_size is None or f.data_parallel_size < n:
                if "data_parallel_size" not in f.args and "data_parallel_size" not in f.engine_config:
                    f.data_parallel_size = n

    def _add_stats(self, st: EngineStats, line_no: int) -> None:
        f = self.facts
        key = "all" if st.engine is None else str(st.engine)
        series = f.stats.get(key)
        if series is None:
            series = f.stats[key] = StatsSeries()
        series.add(st, line_no)
        f.engine_stats_lines += 1
        f.last_stats = st
        self._last_stats_key = key
        self._last_stats_busy = st.running > 0 or st.generation_tokens_per_s > 0 or st.prompt_tokens_per_s > 0
        if st.engine is not None and st.engine >= 1:
            n = st.engine + 1
            if f.data_parallel_size is None or f.data_parallel_size < n:
                f.data_parallel_size = n
        if f.kv_cache_device is None:
            f.kv_cache_device = st.kv_device
        self.steady = True

    def _config_line(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        head, _, body = msg.partition("with config:")
        if "Dumping input data" in head:
            return
        m = _CFG_VERSION_RE.search(head)
        if m:
            f.vllm_version = m.group(1)
        if "V1 LLM engine" in head:
            f.engine_version = "V1"
        elif "V0 LLM engine" in head or "an LLM engine" in head:
            f.engine_version = "V0"
        self._start_seen()
        f.add_evidence("config", line_no, text)
        cfg = parse_kv_repr(body)
        f.engine_config = {k: v for k, v in cfg.items() if _scalar(v)}
        c = f.engine_config
        if isinstance(c.get("model"), str):
            f.model = c["model"]
        if c.get("served_model_name") not in (None, ""):
            f.served_model_name = str(c["served_model_name"])
        for key, attr in (
            ("tensor_parallel_size", "tensor_parallel_size"),
            ("pipeline_parallel_size", "pipeline_parallel_size"),
            ("data_parallel_size", "data_parallel_size"),
            ("max_seq_len", "max_model_len"),
        ):
            v = _to_int(c.get(key))
            if v is not None:
                setattr(f, attr, v)
        ee = _to_bool(c.get("enforce_eager"))
        if ee is not None:
            f.enforce_eager = ee
        if "dtype" in c:
            f.dtype = _clean_dtype(c["dtype"])
        if "kv_cache_dtype" in c:
            f.kv_cache_dtype = _clean_dtype(c["kv_cache_dtype"])
        if "quantization" in c:
            q = c["quantization"]
            f.quantization = None if q in (None, "None") else str(q)
        for key in ("enable_prefix_caching",):
            b = _to_bool(c.get(key))
            if b is not None:
                f.enable_prefix_caching = b
        for key in ("enable_chunked_prefill", "chunked_prefill_enabled"):
            b = _to_bool(c.get(key))
            if b is not None:
                f.enable_chunked_prefill = b
        if "device_config" in c:
            f.device = str(c["device_config"])
        bs = _to_int(c.get("block_size"))
        if bs:
            f.block_size = bs
        self._apply_args()

    def _start_seen(self) -> None:
        """A startup line: after the server was up, it is a restart."""
        f = self.facts
        if self.steady:
            f.server_starts += 1
            self.steady = False
        elif f.server_starts == 0:
            f.server_starts = 1

    def _args_dict(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        body = msg.split("non-default args:", 1)[1]
        self._start_seen()
        f.args = parse_dict_repr(body)
        f.args_source = "non_default_args"
        f.add_evidence("args", line_no, text)
        self._apply_args()

    def _args_namespace(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        body = msg.split("Namespace(", 1)[1]
        if body.endswith(")"):
            body = body[:-1]
        self._start_seen()
        f.args = parse_kv_repr(body)
        f.args_source = "namespace"
        f.add_evidence("args", line_no, text)
        self._apply_args()

    def _apply_args(self) -> None:
        """The user's flags win over what the config line derived."""
        f = self.facts
        a = f.args
        if not a:
            return
        if isinstance(a.get("model"), str) and f.model is None:
            f.model = a["model"]
        smn = a.get("served_model_name")
        if isinstance(smn, list) and smn:
            f.served_model_name = str(smn[0])
        elif isinstance(smn, str) and smn:
            f.served_model_name = smn
        for key in (
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "data_parallel_size",
            "max_num_seqs",
            "max_num_batched_tokens",
            "max_model_len",
            "api_server_count",
        ):
            v = _to_int(a.get(key))
            if v is not None:
                setattr(f, key, v)
        g = _to_float(a.get("gpu_memory_utilization"))
        if g is not None:
            f.gpu_memory_utilization = g
        for key in ("enforce_eager", "enable_prefix_caching", "enable_chunked_prefill"):
            if key in a:
                b = _to_bool(a[key])
                if b is not None:
                    setattr(f, key, b)
        if "quantization" in a and a["quantization"] not in (None, "None"):
            f.quantization = str(a["quantization"])
        if "kv_cache_dtype" in a and a["kv_cache_dtype"] not in (None, "auto"):
            f.kv_cache_dtype = str(a["kv_cache_dtype"])
        if "dtype" in a and f.dtype is None and a["dtype"] not in (None, "auto"):
            f.dtype = _clean_dtype(a["dtype"])
        bs = _to_int(a.get("block_size"))
        if bs:
            f.block_size = bs

    def _kv_lines(self, msg: str, line_no: int, text: str, ll: LogLine) -> None:
        f = self.facts
        m = _KV_SIZE_RE.search(msg)
        if m:
            tokens = _i(m.group(2))
            f.kv_cache_device = m.group(1)
            eng = ll.rank if ll.rank is not None else len(f.kv_cache_tokens_by_engine)
            if eng not in f.kv_cache_tokens_by_engine:
                f.kv_cache_tokens_by_engine[eng] = tokens
            if f.kv_cache_tokens is None:
                f.kv_cache_tokens = tokens
            f.add_evidence("kv_size", line_no, text)
        c = _MAX_CONC_RE.search(msg)
        if c:
            per_req = _i(c.group(1))
            conc = _f(c.group(2))
            if f.max_concurrency is None:
                f.max_concurrency = conc
                f.max_concurrency_tokens_per_request = per_req
                if f.kv_cache_tokens is None and f.engine_version == "V0":
                    f.kv_cache_tokens = int(round(conc * per_req))
            f.add_evidence("max_concurrency", line_no, text)
        b = _BLOCKS_RE.search(msg)
        if b:
            f.gpu_blocks = _i(b.group(1))
            f.cpu_blocks = _i(b.group(2))
            if f.kv_cache_tokens is None:
                f.kv_cache_tokens = f.gpu_blocks * (f.block_size or 16)
                f.kv_cache_device = "GPU"
            f.add_evidence("kv_size", line_no, text)
        elif "blocks:" in msg and msg.lstrip().startswith("#"):
            g = _GPU_BLOCKS_RE.search(msg)
            if g and f.kv_cache_tokens is None:
                f.gpu_blocks = _i(g.group(2))
                f.kv_cache_tokens = f.gpu_blocks * (f.block_size or 16)
                f.kv_cache_device = g.group(1)
                f.add_evidence("kv_size", line_no, text)
        a = _AVAIL_KV_RE.search(msg)
        if a:
            f.available_kv_cache_gib = float(a.group(1))
            f.add_evidence("kv_memory", line_no, text)
        cpu = _CPU_KV_SET_RE.search(msg)
        if cpu:
            f.available_kv_cache_gib = float(cpu.group(1))
            f.add_evidence("kv_memory", line_no, text)

    def _timings(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        m = _LOAD_RE.search(msg)
        if m:
            f.model_load_gib = float(m.group(1))
            f.model_load_seconds = float(m.group(2))
            f.add_evidence("model_load", line_no, text)
            return
        m = _LOAD_V0_RE.search(msg)
        if m:
            f.model_load_gib = float(m.group(1))
            f.add_evidence("model_load", line_no, text)
            return
        m = _GRAPH_RE.search(msg)
        if m:
            f.graph_capture_seconds = float(m.group(1))
            try:
                f.graph_capture_gib = float(m.group(2))
            except ValueError:
                pass
            f.add_evidence("graph_capture", line_no, text)
            return
        m = _COMPILE_RE.search(msg)
        if m:
            f.compile_seconds = float(m.group(1))
            return
        m = _INIT_RE.search(msg)
        if m:
            f.init_engine_seconds = float(m.group(1))
            f.add_evidence("init_engine", line_no, text)

    def _allreduce(self, msg: str, line_no: int, text: str) -> None:
        f = self.facts
        if "Custom allreduce is disabled" not in msg and "custom allreduce is disabled" not in msg.lower():
            return
        if "PCIe-only" in msg or "PCIe only" in msg:
            f.custom_allreduce_pcie_warning = True
            f.custom_allreduce_disabled_reason = "pcie_only"
        elif "P2P" in msg:
            f.custom_allreduce_disabled_reason = "no_p2p"
        elif "world size" in msg:
            f.custom_allreduce_disabled_reason = "world_size"
        elif "across nodes" in msg or "spans" in msg:
            f.custom_allreduce_disabled_reason = "multi_node"
        else:
            f.custom_allreduce_disabled_reason = f.custom_allreduce_disabled_reason or "other"
        f.add_evidence("allreduce", line_no, text)


def parse_log(lines: Iterable[str]) -> LogFacts:
    """Read an iterable of lines (a file object, a generator...) in one pass,
    in bounded memory; return the facts.

    Line numbers count the lines given. To number them as :func:`parse_file`
    and editors do (``\n`` only: vLLM's progress bars hold bare ``\r``), open
    text files with ``newline="\n"``."""
    sc = LogScanner()
    n = 0
    for n, line in enumerate(lines, 1):
        sc.feed(line, n)
    sc.advance_to(n)
    return sc.facts


# ---------------------------------------------------------------------------
# Fast bytes path for files
# ---------------------------------------------------------------------------

CHUNK_SIZE = 8 * 1024 * 1024


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "replace")


STEADY_WINDOW_MIN = 64 * 1024
STEADY_WINDOW_MAX = 4 * 1024 * 1024


def scan_bytes(sc: LogScanner, data: bytes, first_line_no: int) -> int:
    """Feed every complete line of ``data`` (which must end at a line
    boundary) to ``sc``; return the number of lines it held.

    Before startup completes each line is decoded and examined. Afterwards,
    window by window, ``bytes.find`` locates the only lines that can matter
    (those holding :data:`STEADY_KEYWORDS`) and one regex over the window
    parses the common stats-line shape, so the bulk (uvicorn access lines,
    routes, warnings) is never decoded. The facts are the same as
    :func:`parse_log` on the same text (tests check it).
    """
    end = len(data)
    pos = 0
    line_no = first_line_no  # number of the line starting at pos
    find = data.find
    rfind = data.rfind
    count = data.count
    window = STEADY_WINDOW_MIN  # grows while no restart shows up
    while pos < end:
        if not sc._steady:
            window = STEADY_WINDOW_MIN
            nl = find(b"\n", pos)
            stop = end if nl < 0 else nl
            sc.feed(_decode(data[pos:stop]), line_no)
            line_no += 1
            pos = stop + 1
            continue
        # one window of whole lines
        if end - pos <= window:
            wend = end
        else:
            nl = find(b"\n", pos + window)
            wend = end if nl < 0 else nl + 1
        window = min(window * 2, STEADY_WINDOW_MAX)
        general = set()
        for kw in sc.steady_bytes:
            i = find(kw, pos, wend)
            while i >= 0:
                s = rfind(b"\n", pos, i) + 1
                general.add(s if s >= pos else pos)
                nl = find(b"\n", i, wend)
                if nl < 0:
                    break
                i = find(kw, nl + 1, wend)
        # every stats line: the common shape ("Engine NNN: ..." with the usual fields) or another one
        common: List[Any] = []
        other: List[int] = []  # line starts of the other shapes (V0, optional fields, no engine number)
        for m in _FAST_STATS_BRE.finditer(data, pos, wend):
            at = m.start()
            head = data[at - 12 : at]  # "Engine NNN: " cannot span a newline, so this stays in the line
            if m.group(1) is None or head[:7] != b"Engine " or head[10:] != b": " or not head[7:10].isdigit():
                s = rfind(b"\n", pos, at) + 1
                other.append(s if s >= pos else pos)
            else:
                common.append(m)
        cur = pos
        restarted = False
        if not general and not other:
            # only common-shape stats lines in this window (the usual case): record them in one go; line
            # starts and numbers are worked out only for the lines an aggregate keeps
            if common:
                sc.add_stats_rows(data, [(None, m) for m in common], pos, line_no)
        else:
            found: List[Tuple[int, Any]] = []
            for m in common:
                s = rfind(b"\n", pos, m.start()) + 1
                found.append((s if s >= pos else pos, m))
            for s in other:
                found.append((s, None))
            merged = dict(found)
            for g in general:
                merged.setdefault(g, None)
            order = [(s, merged[s]) for s in sorted(merged)]
            rows: List[Tuple[int, Any]] = []  # common-shape stats lines not yet recorded
            base = (0, 0)
            for s, m in order:
                line_no += count(b"\n", cur, s)
                if m is not None:
                    if not rows:
                        base = (s, line_no)
                    stop = m.end()  # the common shape ends at the end of its line
                    rows.append((s, m))
                else:
                    nl = find(b"\n", s, wend)
                    stop = wend if nl < 0 else nl
                    if rows:
                        sc.add_stats_rows(data, rows, base[0], base[1])
                        rows = []
                    sc.feed(_decode(data[s:stop]), line_no)
                line_no += 1
                cur = stop + 1
                if not sc._steady:  # a restart: examine everything again from here
                    restarted = True
                    break
            if rows:
                sc.add_stats_rows(data, rows, base[0], base[1])
        if not restarted:
            if wend > cur:
                line_no += count(b"\n", cur, wend)
                if data[wend - 1 : wend] != b"\n":
                    line_no += 1
            cur = wend
        pos = cur
    sc.advance_to(line_no - 1)
    return line_no - first_line_no


class LogFollower:
    """Reads a growing log: each :meth:`poll` reads only the bytes appended
    since the previous one (complete lines only; a partial last line waits
    for its newline). A file that shrank (rotated or truncated) is read again
    from the start with fresh facts."""

    def __init__(self, path: str, chunk_size: int = CHUNK_SIZE) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.offset = 0
        self.next_line = 1
        self.bytes_read = 0
        self.scanner = LogScanner()
        self._ino: Optional[int] = None

    @property
    def facts(self) -> LogFacts:
        return self.scanner.facts

    def poll(self, final: bool = False) -> int:
        """Read what was appended; return the number of bytes consumed.
        ``final=True`` also takes a last line that has no newline."""
        from pbsvllm.errors import LogParseError

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise LogParseError(f"cannot read vLLM log {self.path}: {exc}", hint="check the path and permissions")
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self.offset = 0
            self.next_line = 1
            self.scanner = LogScanner()
        self._ino = st.st_ino
        if st.st_size == self.offset:
            return 0
        consumed = 0
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                carry = b""
                while True:
                    block = fh.read(self.chunk_size)
                    self.bytes_read += len(block)
                    if not block:
                        break
                    if carry:
                        block = carry + block
                        carry = b""
                    cut = block.rfind(b"\n") + 1
                    if cut == 0:
                        carry = block
                        continue
                    if cut < len(block):
                        carry = block[cut:]
                        block = block[:cut]
                    self.next_line += scan_bytes(self.scanner, block, self.next_line)
                    self.offset += len(block)
                    consumed += len(block)
                if carry and final:
                    self.next_line += scan_bytes(self.scanner, carry, self.next_line)
                    self.offset += len(carry)
                    consumed += len(carry)
        except OSError as exc:
            raise LogParseError(f"cannot read vLLM log {self.path}: {exc}", hint="check the path and permissions")
        return consumed


def parse_file(path: str) -> LogFacts:
    """Parse a whole log file with the fast bytes path. Raises
    :class:`pbsvllm.errors.LogParseError` when the file cannot be read."""
    from pbsvllm.errors import LogParseError

    if not os.path.isfile(path):
        raise LogParseError(
            f"vLLM log not found: {path}",
            hint="pass the path of the server's realtime log, or a tracked alias",
        )
    if path.endswith(".gz"):
        return _parse_gzip(path)
    fl = LogFollower(path)
    fl.poll(final=True)
    return fl.facts


def _parse_gzip(path: str) -> LogFacts:
    """A rotated, gzip-compressed log: decompressed in chunks, same fast path."""
    import gzip

    from pbsvllm.errors import LogParseError

    sc = LogScanner()
    next_line = 1
    carry = b""
    try:
        with gzip.open(path, "rb") as fh:
            while True:
                block = fh.read(CHUNK_SIZE)
                if not block:
                    break
                block = carry + block
                cut = block.rfind(b"\n") + 1
                carry = block[cut:]
                if cut:
                    next_line += scan_bytes(sc, block[:cut], next_line)
        if carry:
            scan_bytes(sc, carry, next_line)
    except (OSError, EOFError) as exc:
        raise LogParseError(f"cannot read compressed vLLM log {path}: {exc}", hint="check the file is a complete gzip file")
    return sc.facts
