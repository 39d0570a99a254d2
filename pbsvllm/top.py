"""``pbsvllm top``: every tracked server at a glance, refreshed in place.

For each tracked job: its scheduler state, its server's state, and -- for
servers that answer -- figures from vLLM's Prometheus ``/metrics``:
generation tokens/s (with a short history as a sparkline), requests running
and waiting, KV cache use, the prefix-cache hit rate and the mean time to
first token. Rates (tokens/s, hit rate, TTFT) are computed between two
scrapes: over the refresh interval in the live view, over ``--sample``
seconds for ``--once``.

The scheduler is asked at most every ``status_every`` seconds (one call per
host, as ``status`` does); ``/metrics`` is scraped every interval, all
servers concurrently, with a short timeout. Pure parts (:func:`parse_scrape`,
:func:`derive`, :func:`render`) take data and return data or text; the
loop (:func:`run_live`) and :func:`snapshot` are the edges.

Metric names (vLLM V1; V0 names as fallbacks): ``vllm:generation_tokens_total``,
``vllm:prompt_tokens_total``, ``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``
(``vllm:gpu_cache_usage_perc``), ``vllm:prefix_cache_queries_total`` /
``vllm:prefix_cache_hits_total`` (``vllm:gpu_prefix_cache_hit_rate``),
``vllm:time_to_first_token_seconds_sum`` / ``_count``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import re
import time
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from pbsvllm.api import Client

HISTORY = 30
SPARK = "▁▂▃▄▅▆▇█"
SCRAPE_TIMEOUT_S = 2.0
ENDED = ("COMPLETED", "FAILED", "CANCELLED")


@dataclasses.dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` reading (sums over engines; KV use averaged over them)."""

    t: float
    generation_tokens: Optional[float] = None
    prompt_tokens: Optional[float] = None
    running: Optional[float] = None
    waiting: Optional[float] = None
    kv_pct: Optional[float] = None
    prefix_queries: Optional[float] = None
    prefix_hits: Optional[float] = None
    prefix_rate_pct: Optional[float] = None  # V0's gauge
    ttft_sum: Optional[float] = None
    ttft_count: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Point:
    """Figures for one refresh: rates over the interval since the previous scrape."""

    t: float
    generation_tokens_per_s: Optional[float]
    prompt_tokens_per_s: Optional[float]
    running: Optional[int]
    waiting: Optional[int]
    kv_cache_usage_pct: Optional[float]
    prefix_cache_hit_pct: Optional[float]
    ttft_s: Optional[float]  # mean over the interval's first tokens; the lifetime mean when none came


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)


def parse_scrape(text: str, t: float) -> Scrape:
    """``/metrics`` text -> one :class:`Scrape` (unknown or missing metrics stay None)."""
    sums: Dict[str, float] = {}
    counts: Dict[str, int] = {}
    for m in _SAMPLE_RE.finditer(text):
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        name = m.group(1)
        sums[name] = sums.get(name, 0.0) + v
        counts[name] = counts.get(name, 0) + 1

    def first(*names: str) -> Optional[float]:
        return next((sums[n] for n in names if n in sums), None)

    def mean(*names: str) -> Optional[float]:
        return next((sums[n] / counts[n] for n in names if n in sums), None)

    kv = mean("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    v0_prefix = mean("vllm:gpu_prefix_cache_hit_rate")
    return Scrape(
        t=t,
        generation_tokens=first("vllm:generation_tokens_total"),
        prompt_tokens=first("vllm:prompt_tokens_total"),
        running=first("vllm:num_requests_running"),
        waiting=first("vllm:num_requests_waiting"),
        kv_pct=None if kv is None else kv * 100.0,
        prefix_queries=first("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
        prefix_hits=first("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        prefix_rate_pct=None if v0_prefix is None else v0_prefix * 100.0,
        ttft_sum=first("vllm:time_to_first_token_seconds_sum"),
        ttft_count=first("vllm:time_to_first_token_seconds_count"),
    )


def _delta(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b < a:  # a counter that went down: the server restarted
        return None
    return b - a


def derive(prev: Optional[Scrape], cur: Scrape) -> Point:
    """The figures shown for ``cur``; rates need ``prev`` (None: gauges only, lifetime TTFT)."""
    dt = (cur.t - prev.t) if prev is not None else 0.0
    gen = prompt = hit = ttft = None
    if prev is not None and dt > 0:
        d = _delta(prev.generation_tokens, cur.generation_tokens)
        gen = None if d is None else d / dt
        d = _delta(prev.prompt_tokens, cur.prompt_tokens)
        prompt = None if d is None else d / dt
        q, h = _delta(prev.prefix_queries, cur.prefix_queries), _delta(prev.prefix_hits, cur.prefix_hits)
        if q and h is not None:
            hit = 100.0 * h / q
        c, s = _delta(prev.ttft_count, cur.ttft_count), _delta(prev.ttft_sum, cur.ttft_sum)
        if c and s is not None:
            ttft = s / c
    if hit is None:
        hit = cur.prefix_rate_pct
        if hit is None and cur.prefix_queries:
            hit = 100.0 * (cur.prefix_hits or 0.0) / cur.prefix_queries
    if ttft is None and cur.ttft_count:
        ttft = (cur.ttft_sum or 0.0) / cur.ttft_count
    return Point(t=cur.t, generation_tokens_per_s=gen, prompt_tokens_per_s=prompt,
                 running=None if cur.running is None else int(cur.running),
                 waiting=None if cur.waiting is None else int(cur.waiting),
                 kv_cache_usage_pct=cur.kv_pct, prefix_cache_hit_pct=hit, ttft_s=ttft)


@dataclasses.dataclass
class ServerView:
    """One row: what ``status`` says about the job, and the server's recent figures."""

    alias: str
    job_id: str
    state: str
    server_state: str
    url: str
    host: str = ""
    last: Optional[Scrape] = None
    history: Deque[Point] = dataclasses.field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    error: str = ""
    log_metrics: Optional[Mapping[str, Any]] = None  # from the job's log, when /metrics is not reachable

    @property
    def point(self) -> Optional[Point]:
        return self.history[-1] if self.history else None

    def update(self, scrape: Scrape) -> None:
        self.history.append(derive(self.last, scrape))
        self.last = scrape
        self.error = ""

    def to_json(self) -> Dict[str, Any]:
        p = self.point
        return {"alias": self.alias, "job_id": self.job_id, "state": self.state, "server_state": self.server_state,
                "url": self.url, "error": self.error or None,
                "metrics": dataclasses.asdict(p) if p is not None else None,
                "history_generation_tokens_per_s": [h.generation_tokens_per_s for h in self.history]}


# ------------------------------------------------------------------ text


def sparkline(values: Sequence[Optional[float]], width: int) -> str:
    vals = [v for v in values if v is not None][-width:]
    if not vals:
        return ""
    top = max(vals)
    if top <= 0:
        return SPARK[0] * len(vals)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in vals)


def _num(v: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


COLUMNS = ("ALIAS", "JOB", "STATE", "SERVER", "TOK/S", "HISTORY", "RUN/WAIT", "KV%", "PREFIX%", "TTFT", "URL")


def row_cells(v: ServerView, spark_width: int) -> List[str]:
    p = v.point
    lm = v.log_metrics or {}
    gen = p.generation_tokens_per_s if p is not None else lm.get("generation_tokens_per_s")
    running = p.running if p is not None else lm.get("running")
    waiting = p.waiting if p is not None else lm.get("waiting")
    kv = p.kv_cache_usage_pct if p is not None else lm.get("kv_cache_usage_pct")
    prefix = p.prefix_cache_hit_pct if p is not None else lm.get("prefix_cache_hit_pct")
    ttft = p.ttft_s if p is not None else None
    return [
        v.alias or "-", v.job_id, v.state, v.server_state + ("!" if v.error else ""),
        _num(gen), sparkline([h.generation_tokens_per_s for h in v.history], spark_width),
        "-" if running is None else f"{running}/{waiting if waiting is not None else '-'}",
        _num(kv), _num(prefix), "-" if ttft is None else f"{ttft * 1000:.0f}ms", v.url or "-",
    ]


def render(views: Sequence[ServerView], *, title: str = "", spark_width: int = 12, color: bool = False,
           width: Optional[int] = None) -> str:
    """The table (and a header line), cut to ``width`` columns when given."""
    rows = [list(COLUMNS)] + [row_cells(v, spark_width) for v in views]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        if width:
            line = line[:width]
        if color and n == 0:
            line = f"\x1b[1m{line}\x1b[0m"
        elif color and views[n - 1].server_state == "failed":
            line = f"\x1b[31m{line}\x1b[0m"
        lines.append(line)
    if not views:
        lines.append("no tracked servers (pbsvllm submit ... to start one)")
    notes = [f"{v.alias or v.job_id}: {v.error}" for v in views if v.error]
    head = [title] if title else []
    return "\n".join(head + lines + notes) + "\n"


# ------------------------------------------------------------------ I/O edges


def fetch(url: str, timeout: float = SCRAPE_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> Scrape:
    """Scrape ``<server root>/metrics`` (vLLM leaves it open: no key). Raises OSError."""
    from pbsvllm.health import server_root

    with urllib.request.urlopen(server_root(url) + "/metrics", timeout=timeout) as resp:  # noqa: S310 - http(s) URL of our server
        text = resp.read().decode("utf-8", "replace")
    return parse_scrape(text, clock())


def views_from_status(rows: Sequence[Mapping[str, Any]], old: Mapping[str, ServerView],
                      show_ended: bool = False) -> List[ServerView]:
    """Rows of ``status`` -> views, keeping each job's history across refreshes."""
    out = []
    for r in rows:
        state = str(r.get("state") or "UNKNOWN")
        if state in ENDED and not show_ended:
            continue
        job_id = str(r.get("job_id"))
        v = old.get(job_id) or ServerView(alias=str(r.get("alias") or ""), job_id=job_id, state=state,
                                           server_state=str(r.get("server_state") or "none"),
                                           url=str(r.get("url") or ""), host=str(r.get("host") or ""))
        v.state, v.server_state, v.url = state, str(r.get("server_state") or "none"), str(r.get("url") or "")
        m = r.get("metrics")
        v.log_metrics = m if isinstance(m, Mapping) else None
        out.append(v)
    return out


def scrape_all(views: Sequence[ServerView], timeout: float = SCRAPE_TIMEOUT_S,
               fetcher: Callable[[str], Scrape] = fetch) -> None:
    """Scrape every server that has a URL and is not known dead, concurrently."""
    targets = [v for v in views if v.url and v.server_state in ("ready", "starting")]
    if not targets:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        futures = {pool.submit(fetcher, v.url): v for v in targets}
        for fut, v in futures.items():
            try:
                v.update(fut.result())
            except Exception as exc:  # one server's failure is shown on its row, never ends the view
                v.error = f"/metrics: {getattr(exc, 'reason', None) or exc}"


def snapshot(api: Client, sample_s: float = 1.0, show_ended: bool = False,
             fetcher: Callable[[str], Scrape] = fetch) -> List[ServerView]:
    """``--once``: one status, two scrapes ``sample_s`` apart (for the rates)."""
    report = api.status(remove_ended=False)
    views = views_from_status(report.rows, {}, show_ended)
    scrape_all(views, fetcher=fetcher)
    if any(v.last is not None for v in views) and sample_s > 0:
        time.sleep(sample_s)
        scrape_all(views, fetcher=fetcher)
    return views


def run_live(api: Client, *, interval: float, status_every: float, write: Callable[[str], None],
             key_pressed: Callable[[float], Optional[str]], size: Callable[[], tuple[int, int]],
             color: bool, show_ended: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
    """Redraw every ``interval`` seconds until 'q' is pressed (Ctrl-C works too)."""
    views: Dict[str, ServerView] = {}
    order: List[ServerView] = []
    next_status = 0.0
    while True:
        now = clock()
        if now >= next_status:
            report = api.status(remove_ended=False)
            order = views_from_status(report.rows, views, show_ended)
            views = {v.job_id: v for v in order}
            next_status = now + status_every
        scrape_all(order)
        cols, lines = size()
        stamp = time.strftime("%H:%M:%S")
        title = (f"pbsvllm top  {stamp}  {len(order)} server(s)  refresh {interval:g}s, scheduler every "
                 f"{status_every:g}s  (q to quit)")
        text = render(order, title=title, color=color, width=cols,
                      spark_width=max(5, min(HISTORY, cols // 8)))
        body = "\n".join(text.splitlines()[: max(1, lines - 1)])
        write("\x1b[H\x1b[2J" + body.replace("\n", "\x1b[K\n") + "\x1b[K")
        key = key_pressed(interval)
        if key in ("q", "Q", "\x1b", "\x03"):
            return
