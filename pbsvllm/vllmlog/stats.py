"""Engine-stats lines: parse one (:func:`parse_stats_line`), aggregate a
series of them in bounded memory (:class:`StatsSeries`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from pbsvllm.vllmlog.lines import _f


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
_FAST_STATS_BRE = re.compile(
    b"Avg prompt throughput: (?:" + _FAST_STATS[len("Avg prompt throughput: "):].encode() + b")?", re.M
)
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


SAMPLE_CAP = 256


#: One stats line's numbers, as :meth:`StatsSeries.add_rows` takes them:
#: prompt and generation tokens/s, running, waiting, KV cache usage %,
#: prefix-cache hit %, preemptions.
StatsRow = Tuple[float, float, int, int, Optional[float], Optional[float], Optional[int]]


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
        """Record one stats line (line number ``line_no``)."""
        item = StatsSample(line_no, s)
        self.add_rows(
            [(s.prompt_tokens_per_s, s.generation_tokens_per_s, s.running, s.waiting, s.kv_cache_usage_pct,
              s.prefix_cache_hit_pct, s.preemptions)],
            lambda _i: item,
        )

    def add_rows(self, rows: Sequence[StatsRow], sample: Callable[[int], StatsSample]) -> None:
        """Record stats lines in file order: ``rows[i]`` holds line ``i``'s
        numbers, and ``sample(i)`` builds its :class:`StatsSample` -- called
        only for the lines an aggregate keeps (the first, the peaks, the
        thinned sample, the last), which is what lets the fast bytes path skip
        building an :class:`EngineStats` for most lines.

        The one aggregation of stats lines: :meth:`add` (one parsed line) and
        the bytes path (:meth:`LogScanner.add_stats_rows`) both come here."""
        if not rows:
            return
        n = self.count
        sum_gen = self.sum_gen
        busy_count = self.busy_count
        b_gen, b_prompt, b_run, b_kv, b_kvn = (self.busy_sum_gen, self.busy_sum_prompt, self.busy_sum_running,
                                               self.busy_sum_kv, self.busy_kv_count)
        max_run, max_wait, max_kv, max_gen = self._max_running, self._max_waiting, self._max_kv, self._max_gen
        waiting_lines = self.waiting_lines
        preempt_total = self.preemptions_total
        p_sum, p_n, p_bsum, p_bn = self.prefix_sum, self.prefix_count, self.prefix_busy_sum, self.prefix_busy_count
        stride = self._stride
        sample_list = self.sample
        cap = self.cap
        no_first = self.first is None
        for i, (prompt, gen, running, waiting, kv, pct, preempt) in enumerate(rows):
            busy = running > 0 or gen > 0 or prompt > 0
            n += 1
            if no_first:
                first = self.first = sample(i)
                self.kv_device = first.stats.kv_device
                no_first = False
            sum_gen += gen
            if busy:
                busy_count += 1
                b_gen += gen
                b_prompt += prompt
                b_run += running
                if kv is not None:
                    b_kv += kv
                    b_kvn += 1
            if running > max_run:
                max_run = running
                self.max_running = sample(i)
            if waiting > 0:
                waiting_lines += 1
            if waiting > max_wait:
                max_wait = waiting
                self.max_waiting = sample(i)
            if kv is not None and kv > max_kv:
                max_kv = kv
                self.max_kv = sample(i)
            if gen > max_gen:
                max_gen = gen
                self.max_gen = sample(i)
            if preempt:
                preempt_total += preempt
            if pct is not None:
                p_sum += pct
                p_n += 1
                if busy:
                    p_bsum += pct
                    p_bn += 1
            if (n - 1) % stride == 0:
                sample_list.append(sample(i))
                if len(sample_list) > cap:
                    sample_list = sample_list[::2]
                    stride *= 2
        self.count = n
        self.sum_gen = sum_gen
        self.busy_count = busy_count
        (self.busy_sum_gen, self.busy_sum_prompt, self.busy_sum_running, self.busy_sum_kv,
         self.busy_kv_count) = b_gen, b_prompt, b_run, b_kv, b_kvn
        self._max_running, self._max_waiting, self._max_kv, self._max_gen = max_run, max_wait, max_kv, max_gen
        self.waiting_lines = waiting_lines
        self.preemptions_total = preempt_total
        self.prefix_sum, self.prefix_count, self.prefix_busy_sum, self.prefix_busy_count = p_sum, p_n, p_bsum, p_bn
        self._stride = stride
        self.sample = sample_list
        self.last = sample(len(rows) - 1)

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
