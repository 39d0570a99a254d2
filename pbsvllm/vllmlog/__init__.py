"""The one vLLM log parser of the project: version-tolerant, streaming, pure.

Formats are those of vLLM 0.6 to 0.33 (see ``docs/reference/vllm-logs.md``): line layouts
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

The package's modules, each usable on its own:

- :mod:`~pbsvllm.vllmlog.lines` -- :func:`strip_line`, :func:`split_line`.
- :mod:`~pbsvllm.vllmlog.stats` -- :class:`EngineStats`,
  :func:`parse_stats_line`, :class:`StatsSeries` (the one aggregation of
  stats lines, used by both the line path and the bytes path).
- :mod:`~pbsvllm.vllmlog.errors` -- :func:`classify_error`, :class:`ErrorTracker`.
- :mod:`~pbsvllm.vllmlog.phases` -- :func:`detect_phase`.
- :mod:`~pbsvllm.vllmlog.reprs` -- the Python-literal reprs of the config
  and args lines.
- :mod:`~pbsvllm.vllmlog.facts` -- :class:`LogFacts`.
- :mod:`~pbsvllm.vllmlog.scanner` -- :class:`LogScanner`, :func:`parse_log`.
- :mod:`~pbsvllm.vllmlog.fastpath` -- :func:`scan_bytes`, :class:`LogFollower`,
  :func:`parse_file`, :func:`parse_stream`.

The formats are described, with their public sources, in
``docs/reference/vllm-logs.md``.
"""

from __future__ import annotations

from pbsvllm.vllmlog.errors import ERROR_KINDS, MAX_ERROR_EVENTS, ErrorEvent, ErrorTracker, classify_error
from pbsvllm.vllmlog.facts import EVIDENCE_CAP, LogFacts
from pbsvllm.vllmlog.fastpath import (
    CHUNK_SIZE,
    STEADY_WINDOW_MAX,
    STEADY_WINDOW_MIN,
    LogFollower,
    parse_file,
    parse_stream,
    scan_bytes,
)
from pbsvllm.vllmlog.lines import LogLine, split_line, strip_line
from pbsvllm.vllmlog.phases import PHASES, detect_phase
from pbsvllm.vllmlog.reprs import parse_dict_repr, parse_kv_repr
from pbsvllm.vllmlog.scanner import STEADY_KEYWORDS, LogScanner, parse_log, steady_keywords
from pbsvllm.vllmlog.stats import SAMPLE_CAP, EngineStats, StatsSample, StatsSeries, parse_stats_line

__all__ = [
    "CHUNK_SIZE",
    "ERROR_KINDS",
    "EVIDENCE_CAP",
    "MAX_ERROR_EVENTS",
    "PHASES",
    "SAMPLE_CAP",
    "STEADY_KEYWORDS",
    "STEADY_WINDOW_MAX",
    "STEADY_WINDOW_MIN",
    "EngineStats",
    "ErrorEvent",
    "ErrorTracker",
    "LogFacts",
    "LogFollower",
    "LogLine",
    "LogScanner",
    "StatsSample",
    "StatsSeries",
    "classify_error",
    "detect_phase",
    "parse_dict_repr",
    "parse_file",
    "parse_kv_repr",
    "parse_log",
    "parse_stream",
    "parse_stats_line",
    "scan_bytes",
    "split_line",
    "steady_keywords",
    "strip_line",
]
