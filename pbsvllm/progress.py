"""What ``submit --wait`` and ``watch`` show while a server comes up.

Two pure parts and one printer:

- :func:`log_detail`: a vLLM log line -> a short progress note (weight
  shards ``3/8``, CUDA-graph capture ``30/67``, ``torch.compile`` and graph
  capture times, weights loaded), or ``None``;
- :func:`estimated_start_note`: the scheduler's estimated start (PBS Pro's
  ``estimated.start_time``) as ``starts ~14:05 (in 12m)``;
- :class:`ProgressReporter`: on a terminal following one job, one line
  redrawn in place every second -- phases so far, the latest note, the
  elapsed time; otherwise (a pipe, a log file, several jobs, ``TERM=dumb``)
  plain lines: one per phase and per note that matters, and a heartbeat line
  every 30 s so a long queue wait or weight load is never silent.
  ``NO_COLOR`` (https://no-color.org) turns colour off; ``TERM=dumb``
  turns off every escape sequence.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Callable, Dict, Mapping, Optional, Tuple

from pbsvllm.watcher import Reporter

if TYPE_CHECKING:  # pragma: no cover
    from pbsvllm.watcher import JobProgress

HEARTBEAT_S = 30.0
REDRAW_S = 1.0

_SHARDS_RE = re.compile(r"Loading (?:safetensors|pt|gguf)? ?checkpoint shards:\s*(\d+)% Completed \| (\d+)/(\d+)")
_CAPTURE_RE = re.compile(r"Capturing (?:CUDA graphs?|cudagraphs?)[^:]*:\s*(\d+)%\|[^|]*\|\s*(\d+)/(\d+)", re.I)
_COMPILE_DONE_RE = re.compile(r"torch\.compile takes ([\d.]+) s in total")
_DYNAMO_RE = re.compile(r"Dynamo bytecode transform time: ([\d.]+) s")
_GRAPH_DONE_RE = re.compile(r"Graph capturing finished in ([\d.]+) secs?")
_WEIGHTS_RE = re.compile(r"Model loading took ([\d.]+) ?GiB(?: memory)? and ([\d.]+) seconds")
_WEIGHTS_TOOK_RE = re.compile(r"Loading weights took ([\d.]+) seconds")


#: (pattern, note from its groups), tried in order
_NOTES: Tuple[Tuple[re.Pattern[str], Callable[[Tuple[str, ...]], str]], ...] = (
    (_SHARDS_RE, lambda g: f"weight shards {g[1]}/{g[2]}"),
    (_CAPTURE_RE, lambda g: f"capturing CUDA graphs {g[1]}/{g[2]}"),
    (_WEIGHTS_RE, lambda g: f"weights loaded ({float(g[0]):g} GiB in {float(g[1]):.1f} s)"),
    (_WEIGHTS_TOOK_RE, lambda g: f"weights loaded in {float(g[0]):.1f} s"),
    (_DYNAMO_RE, lambda g: f"compiling (Dynamo {float(g[0]):.1f} s)"),
    (_COMPILE_DONE_RE, lambda g: f"torch.compile done in {float(g[0]):.1f} s"),
    (_GRAPH_DONE_RE, lambda g: f"CUDA graphs captured in {float(g[0]):g} s"),
)


def log_detail(message: str) -> Optional[str]:
    """A progress note for one vLLM log message (the header already stripped), or None."""
    for pattern, note in _NOTES:
        m = pattern.search(message)
        if m:
            return note(m.groups())
    return None


def estimated_start_note(epoch: float, now: Optional[float] = None) -> str:
    """``starts ~14:05 (in 12m)``: the scheduler's estimate, in local time."""
    now = time.time() if now is None else now
    when = time.strftime("%H:%M" if abs(epoch - now) < 20 * 3600 else "%a %d %b %H:%M", time.localtime(epoch))
    left = epoch - now
    return f"estimated start ~{when} ({'in ' + fmt_elapsed(left) if left > 0 else 'due now'})"


def fmt_elapsed(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _important(old: str, new: str) -> bool:
    """Plain output: print a note when its kind changes or a counter reaches its end."""
    kind = lambda t: re.sub(r"[\d./()~:]+", "", t).strip()  # noqa: E731
    if kind(old) != kind(new):
        return True
    m = re.search(r"(\d+)/(\d+)$", new)
    return bool(m and m.group(1) == m.group(2))


class ProgressReporter(Reporter):
    """Progress on a terminal (one live line) or as plain lines with a heartbeat."""

    def __init__(self, write: Callable[[str], None], *, tty: bool, single_job: bool,
                 env: Mapping[str, str] = os.environ, clock: Callable[[], float] = time.monotonic,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        super().__init__()
        self.write = write
        dumb = env.get("TERM", "") == "dumb"
        self.live = tty and single_job and not dumb
        self.color = self.live and not env.get("NO_COLOR")
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.trail: Dict[str, list] = {}
        self.label: Dict[str, str] = {}
        self.note: Dict[str, str] = {}
        self.printed_note: Dict[str, str] = {}
        self.last_line_at: Dict[str, float] = {}
        self._drawn = 0.0
        self._open = False

    # -- what the watcher calls
    def phase(self, job: JobProgress, label: str, elapsed_s: float) -> None:
        super().phase(job, label, elapsed_s)
        trail = self.trail.setdefault(job.job_id, [])
        if trail and trail[-1] in ("queued", "held") and label not in ("queued", "held"):
            trail[-1] = f"{trail[-1]} {fmt_elapsed(elapsed_s)}"  # how long it waited
        trail.append(label)
        self.label[job.job_id] = label
        self.note.pop(job.job_id, None)
        if self.live:
            self._draw(job, elapsed_s, force=True)
        else:
            self._line(job, f"{label} ({fmt_elapsed(elapsed_s)})")

    def detail(self, job: JobProgress, text: str, elapsed_s: float) -> None:
        if self.note.get(job.job_id) == text:
            return
        self.note[job.job_id] = text
        if self.live:
            self._draw(job, elapsed_s, force=_important(self.printed_note.get(job.job_id, ""), text))
            self.printed_note[job.job_id] = text
        elif _important(self.printed_note.get(job.job_id, ""), text):
            self.printed_note[job.job_id] = text
            self._line(job, f"{text} ({fmt_elapsed(elapsed_s)})")

    def heartbeat(self, job: JobProgress, elapsed_s: float) -> None:
        if self.live:
            self._draw(job, elapsed_s)
            return
        now = self.clock()
        if now - self.last_line_at.get(job.job_id, now) >= self.heartbeat_s:
            label = self.label.get(job.job_id, "waiting")
            note = self.note.get(job.job_id)
            self._line(job, f"still {label}" + (f", {note}" if note else "") + f" ({fmt_elapsed(elapsed_s)})")
        self.last_line_at.setdefault(job.job_id, now)

    def event(self, job: JobProgress, text: str) -> None:
        super().event(job, text)
        self._close_line()
        if text.startswith("FAILED") and self.color:
            text = f"\x1b[31m{text}\x1b[0m"
        elif text.startswith("registered") and self.color:
            text = f"\x1b[32m{text}\x1b[0m"
        self.write(f"   {text}\n" if self.live else f"{job.name}: {text}\n")

    def close(self) -> None:
        self._close_line()

    # -- output
    def _line(self, job: JobProgress, text: str) -> None:
        self.write(f"{job.name}: {text}\n")
        self.last_line_at[job.job_id] = self.clock()

    def _draw(self, job: JobProgress, elapsed_s: float, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._drawn < REDRAW_S:
            return
        self._drawn = now
        trail = " -> ".join(self.trail.get(job.job_id, []) or ["submitted"])
        note = self.note.get(job.job_id)
        line = f"   {trail}" + (f" · {note}" if note else "") + f" · {fmt_elapsed(elapsed_s)}"
        if self.color:
            line = line.replace(" -> ", " \x1b[2m->\x1b[0m ")
        self.write("\r\x1b[K" + line)
        self._open = True

    def _close_line(self) -> None:
        if self._open:
            self.write("\n")
            self._open = False
