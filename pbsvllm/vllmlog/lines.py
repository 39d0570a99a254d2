"""Line-level helpers: strip a vLLM log line of its wrappers, take it apart."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

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


def _f(s: str) -> float:
    return float(s.replace(",", ""))


def _i(s: str) -> int:
    return int(s.replace(",", ""))
