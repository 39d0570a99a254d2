"""Self-contained HTML plots: ``bench --plot FILE`` and ``doctor --format html``.

Each page is one file that opens offline (compute and login nodes have no
internet): plotly.js is inlined, no stylesheet, font or script is fetched.
plotly is an optional extra (``pip install 'pbsvllm[plot]'``) imported only
inside :func:`_plotly`, so ``pbsvllm --help`` and every other command never
load it.

Data in, text out: :func:`bench_html` takes the ``bench --json`` document
(so a saved report can be plotted again), :func:`doctor_html` a
:class:`pbsvllm.doctor.Diagnosis`. The series plotted are also kept in the
page as JSON (``<script type="application/json" id="pbsvllm-data">``) for
scripts that read the numbers back.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pbsvllm.doctor import Diagnosis
    from pbsvllm.vllmlog import LogFacts

#: Colours of the first, second... target or engine (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_SEVERITY_COLOUR = {"critical": "#b00020", "high": "#b00020", "warning": "#b35c00", "medium": "#b35c00",
                    "info": "#1f5f99", "low": "#1f5f99"}
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _plotly() -> Any:
    """The plotly package, or one clear line saying how to get it."""
    try:
        import plotly.graph_objects as go  # noqa: F401
        from plotly.subplots import make_subplots  # noqa: F401
    except ImportError:
        raise ConfigError("plots need the optional plotly package, which is not installed",
                          hint="pip install 'pbsvllm[plot]'") from None
    import plotly

    return plotly


def check_plot_path(path: str) -> None:
    """Before a long run: plotly is there and ``path``'s folder exists and is writable."""
    import os

    _plotly()
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write the plot {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"cannot write the plot {path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise ConfigError(f"cannot write the plot {path}: it is a folder")


def write_page(path: str, text: str) -> None:
    """Replace ``path`` atomically with the page (mode 0644: a report is meant to be shared)."""
    from pbsvllm.fileio import atomic_write, write_error_text

    try:
        atomic_write(path, text, mode=0o644)
    except OSError as exc:
        raise ConfigError(write_error_text(path, exc)) from None


# --------------------------------------------------------------------------- bench


@dataclass(frozen=True)
class BenchLevel:
    concurrency: int
    requests: int
    ok: int
    output_tokens_per_s: float
    requests_per_s: float
    ttft_p50_s: Optional[float]
    ttft_p99_s: Optional[float]
    latency_p50_s: Optional[float]
    latency_p99_s: Optional[float]


@dataclass(frozen=True)
class BenchSeries:
    """One target of a bench report: its name and its levels, by concurrency."""

    name: str
    url: str
    model: str
    levels: Tuple[BenchLevel, ...]


def _num(v: Any, where: str) -> Optional[float]:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"bench report: {where} must be a number, got {v!r}")
    return float(v)


def bench_series(report: Mapping[str, Any]) -> List[BenchSeries]:
    """The targets of a ``bench --json`` document (ConfigError naming the key if it is not one)."""
    runs = report.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ConfigError("bench report: key 'runs' must be a non-empty list (is this `pbsvllm bench --json` output?)")
    out: List[BenchSeries] = []
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or not isinstance(run.get("levels"), list):
            raise ConfigError(f"bench report: runs[{i}] must have a 'levels' list")
        raw_target = run.get("target")
        target: Mapping[str, Any] = raw_target if isinstance(raw_target, Mapping) else {}
        urls = target.get("urls")
        url = ", ".join(str(u) for u in urls) if isinstance(urls, list) else str(target.get("url") or "")
        levels: List[BenchLevel] = []
        for j, lv in enumerate(run["levels"]):
            where = f"runs[{i}].levels[{j}]"
            if not isinstance(lv, Mapping) or not isinstance(lv.get("concurrency"), int):
                raise ConfigError(f"bench report: {where} must have an integer 'concurrency'")
            levels.append(BenchLevel(
                concurrency=lv["concurrency"], requests=int(lv.get("requests") or 0), ok=int(lv.get("ok") or 0),
                output_tokens_per_s=_num(lv.get("output_tokens_per_s"), f"{where}.output_tokens_per_s") or 0.0,
                requests_per_s=_num(lv.get("requests_per_s"), f"{where}.requests_per_s") or 0.0,
                ttft_p50_s=_num(lv.get("ttft_p50_s"), f"{where}.ttft_p50_s"),
                ttft_p99_s=_num(lv.get("ttft_p99_s"), f"{where}.ttft_p99_s"),
                latency_p50_s=_num(lv.get("latency_p50_s"), f"{where}.latency_p50_s"),
                latency_p99_s=_num(lv.get("latency_p99_s"), f"{where}.latency_p99_s"),
            ))
        name = str(target.get("name") or url or f"target {i + 1}")
        out.append(BenchSeries(name, url, str(target.get("model") or ""),
                               tuple(sorted(levels, key=lambda x: x.concurrency))))
    return out


def bench_figure(series: Sequence[BenchSeries], title: str = "") -> Any:
    """Throughput (left) and latency (right) against concurrency, every target on the same axes."""
    _plotly()
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("Output throughput (tokens/s)",
                                        "Latency (s): end-to-end and time to first token"))
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        xs = [lv.concurrency for lv in s.levels]
        hover = [f"{s.name}<br>concurrency {lv.concurrency}: {lv.ok}/{lv.requests} ok, {lv.requests_per_s:.2f} req/s"
                 for lv in s.levels]
        fig.add_trace(go.Scatter(x=xs, y=[lv.output_tokens_per_s for lv in s.levels], name=f"{s.name} tokens/s",
                                 legendgroup=s.name, mode="lines+markers", line={"color": colour, "width": 3},
                                 hovertext=hover, meta={"target": s.name, "figure": "output_tokens_per_s"}),
                      row=1, col=1)
        for key, label, dash in (("latency_p50_s", "latency p50", "solid"), ("latency_p99_s", "latency p99", "dash"),
                                 ("ttft_p50_s", "TTFT p50", "dot"), ("ttft_p99_s", "TTFT p99", "dashdot")):
            ys = [getattr(lv, key) for lv in s.levels]
            if all(y is None for y in ys):
                continue
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{s.name} {label}", legendgroup=s.name,
                                     mode="lines+markers", line={"color": colour, "dash": dash},
                                     meta={"target": s.name, "figure": key}),
                          row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(type="log", title_text="concurrent requests", row=1, col=col,
                         tickvals=sorted({lv.concurrency for s in series for lv in s.levels}))
    fig.update_yaxes(rangemode="tozero", title_text="tokens/s", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", title_text="seconds", row=1, col=2)
    fig.update_layout(title={"text": title}, template="plotly_white", height=520,
                      legend={"orientation": "h", "y": -0.2}, margin={"l": 60, "r": 30, "t": 80, "b": 40})
    return fig


def bench_html(report: Mapping[str, Any]) -> str:
    """The whole page for a ``bench --json`` document."""
    series = bench_series(report)
    names = " vs ".join(s.name for s in series)
    raw_settings = report.get("settings")
    settings: Mapping[str, Any] = raw_settings if isinstance(raw_settings, Mapping) else {}
    title = f"pbsvllm bench: {names}"
    fig = bench_figure(series)  # the page's heading is the title
    rows = []
    for s in series:
        for lv in s.levels:
            rows.append([s.name, str(lv.concurrency), f"{lv.ok}/{lv.requests}", f"{lv.requests_per_s:.2f}",
                         f"{lv.output_tokens_per_s:.1f}", _sec(lv.ttft_p50_s), _sec(lv.ttft_p99_s),
                         _sec(lv.latency_p50_s), _sec(lv.latency_p99_s)])
    table = _html_table(["target", "concurrency", "ok", "req/s", "out tok/s", "TTFT p50", "TTFT p99",
                         "latency p50", "latency p99"], rows)
    ratio = ""
    comparison = report.get("comparison")
    if isinstance(comparison, Mapping) and isinstance(comparison.get("levels"), list):
        crow = []
        for item in comparison["levels"]:
            if isinstance(item, Mapping) and isinstance(item.get("ratios"), Mapping):
                r = item["ratios"]
                crow.append([str(item.get("concurrency")), *(_ratio(r.get(k)) for k in (
                    "requests_per_s", "output_tokens_per_s", "ttft_p50_s", "latency_p50_s", "latency_p99_s"))])
        ratio = (f"<h2>Ratio {html.escape(str(comparison.get('ratio', '')))}</h2>"
                 + _html_table(["concurrency", "req/s", "out tok/s", "TTFT p50", "latency p50", "latency p99"], crow))
    facts = [html.escape(f"{s.name}: {s.url}" if s.name != s.url else s.url) + f" (model {html.escape(s.model)})"
             for s in series]
    setting_text = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    body = (f"<h1>{html.escape(title)}</h1>"
            f"<p class='meta'>{'<br>'.join(facts)}<br>started {html.escape(str(report.get('started_at', '')))}; "
            f"{html.escape(setting_text)}</p>"
            + _figure_div(fig, first=True) + "<h2>Figures</h2>" + table + ratio)
    data = {"kind": "bench", "targets": [{"name": s.name, "levels": [lv.__dict__ for lv in s.levels]}
                                          for s in series]}
    return _page(title, body, data)


def _sec(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f} s"


def _ratio(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.2f}x"


# --------------------------------------------------------------------------- doctor


@dataclass(frozen=True)
class StatsPoint:
    """One engine-stats line as plotted: seconds since the first stats line
    (None when the log has no timestamps), its line number and figures."""

    engine: str
    line_no: int
    t_s: Optional[float]
    time: str
    kv_cache_usage_pct: Optional[float]
    running: int
    waiting: int
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    prefix_cache_hit_pct: Optional[float]


def _seconds(stamp: str) -> Optional[float]:
    """'MM-DD HH:MM:SS' (vLLM's log time, no year) -> seconds from the year's start (31-day months:
    only differences are used, and a log spans days, not months)."""
    try:
        date, clock = stamp.split(" ")
        month, day = (int(x) for x in date.split("-"))
        h, m, s = (float(x) for x in clock.split(":"))
    except ValueError:
        return None
    return ((month * 31 + day) * 24 + h) * 3600 + m * 60 + s


def stats_points(facts: LogFacts) -> List[StatsPoint]:
    """The engine-stats samples vLLM's log holds (``LogFacts.stats``, evenly thinned
    by the parser for long logs), in line order, with time from the log's timestamps."""
    from pbsvllm.vllmlog import split_line

    raw: List[Tuple[str, int, Any]] = []
    for engine, series in facts.stats.items():
        for smp in series.sample:
            raw.append((engine, smp.line_no, smp.stats))
    raw.sort(key=lambda item: item[1])
    stamps = [split_line(st.raw).time if st.raw else "" for _e, _n, st in raw]
    secs = [_seconds(t) if t else None for t in stamps]
    t0 = next((s for s in secs if s is not None), None)
    timed = t0 is not None and all(s is not None for s in secs)
    out = []
    for (engine, line_no, st), stamp, sec in zip(raw, stamps, secs):
        out.append(StatsPoint(engine, line_no, (sec - t0) if timed and sec is not None and t0 is not None else None,
                              stamp, st.kv_cache_usage_pct, st.running, st.waiting, st.prompt_tokens_per_s,
                              st.generation_tokens_per_s, st.prefix_cache_hit_pct))
    return out


def doctor_figure(points: Sequence[StatsPoint], title: str = "") -> Any:
    """Three timelines sharing the x axis: KV cache use, running/waiting, tokens/s (one colour per engine)."""
    _plotly()
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    timed = bool(points) and all(p.t_s is not None for p in points)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("KV cache usage (%)", "Requests running (solid) and waiting (dashed)",
                                        "Throughput (tokens/s): generation (solid) and prompt (dotted)"))
    engines = sorted({p.engine for p in points}, key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))
    for i, engine in enumerate(engines):
        pts = [p for p in points if p.engine == engine]
        colour = PALETTE[i % len(PALETTE)]
        label = "engine " + engine if engine.isdigit() else engine
        xs = [p.t_s if timed else p.line_no for p in pts]
        hover = [f"{label}, line {p.line_no}" + (f", {p.time}" if p.time else "") for p in pts]

        series = [("kv_cache_usage_pct", "KV %", 1, "solid"), ("running", "running", 2, "solid"),
                  ("waiting", "waiting", 2, "dash"), ("generation_tokens_per_s", "generation tok/s", 3, "solid"),
                  ("prompt_tokens_per_s", "prompt tok/s", 3, "dot")]
        for key, name, row, dash in series:
            ys = [getattr(p, key) for p in pts]
            if all(y is None for y in ys):
                continue  # e.g. no KV figure in this vLLM's stats lines
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} {name}", legendgroup=label, mode="lines+markers",
                                     marker={"size": 4}, line={"color": colour, "dash": dash}, hovertext=hover,
                                     meta={"engine": engine, "figure": key}), row=row, col=1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(range=[0, 100], row=1, col=1)
    fig.update_xaxes(title_text="seconds since the first stats line" if timed else "log line", row=3, col=1)
    fig.update_layout(title={"text": title}, template="plotly_white", height=760, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.12}, margin={"l": 60, "r": 20, "t": 80, "b": 40})
    return fig


def doctor_html(diag: Diagnosis) -> str:
    """The doctor report as one page: the log's timelines with the findings beside them."""
    facts = diag.facts
    points = stats_points(facts)
    model = facts.served_model_name or facts.model or "unknown model"
    title = f"pbsvllm doctor: {model}"
    meta = [f"log {diag.log_path} ({facts.lines:,} lines)", f"vLLM {facts.vllm_version or '?'}",
            f"node: {diag.node.describe()}"]
    if facts.error:
        meta.append(f"error: {facts.error}")
    if points:
        fig = doctor_figure(points, "Engine stats over time")
        left = _figure_div(fig, first=True)
    else:
        left = ("<p class='empty'>The log has no engine-stats lines (vLLM prints them every 10 s while "
                "serving unless --disable-log-stats), so there is no timeline to draw.</p>")
    load = _html_table(["figure", "value"], _load_rows(diag.load.to_dict()))
    findings = "".join(_finding_html(f) for f in diag.findings) or "<p>No findings: nothing to change.</p>"
    rec = diag.recommendation
    if rec.available:
        changes = _html_table(["flag", "now", "recommended", "why"],
                              [[c.flag, c.current or "(not set)", c.recommended or "(remove)", c.reason]
                               for c in rec.changes])
        rec_html = (f"<h2>Recommendation</h2><pre>{html.escape(rec.submit_command)}</pre>{changes}"
                    + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in rec.notes))
    else:
        rec_html = f"<h2>Recommendation</h2><p>{html.escape(rec.why_unavailable)}</p>"
    strengths = "".join(f"<li>{html.escape(s)}</li>" for s in diag.strengths)
    body = (f"<h1>{html.escape(title)}</h1><p class='meta'>{'<br>'.join(html.escape(m) for m in meta)}</p>"
            f"<div class='grid'><section class='plots'>{left}<h2>Load (from the stats lines)</h2>{load}"
            + (f"<h2>What is already right</h2><ul>{strengths}</ul>" if strengths else "")
            + f"</section><aside class='findings'><h2>Findings ({len(diag.findings)})</h2>{findings}"
            f"{rec_html}</aside></div>")
    data = {"kind": "doctor", "log": diag.log_path, "findings": [f.id for f in diag.findings],
            "points": [p.__dict__ for p in points]}
    return _page(title, body, data)


def _load_rows(load: Mapping[str, Any]) -> List[List[str]]:
    """``Diagnosis.load`` (the figures of ``doctor --format json``'s ``load``) as table rows."""
    rows = []
    for key, value in load.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        text = f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}" \
            if isinstance(value, int) and not isinstance(value, bool) else str(value)
        rows.append([key.replace("_", " "), text])
    return rows


def _finding_html(f: Any) -> str:
    colour = _SEVERITY_COLOUR.get(str(f.severity).lower(), "#444")
    evidence = "".join(f"<li><code>line {n}: {html.escape(t[:300])}</code></li>" for n, t in f.evidence[:4])
    return (f"<div class='finding' style='border-left-color:{colour}'>"
            f"<div class='sev' style='color:{colour}'>{html.escape(str(f.severity))} · {html.escape(f.id)}</div>"
            f"<h3>{html.escape(f.title)}</h3>"
            + (f"<p><b>Cost:</b> {html.escape(f.cost)}</p>" if f.cost else "")
            + (f"<p><b>Change:</b> {html.escape(f.recommendation)}</p>" if f.recommendation else "")
            + (f"<ul class='ev'>{evidence}</ul>" if evidence else "") + "</div>")


# --------------------------------------------------------------------------- page


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222;max-width:1600px}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.2em 0 .4em} h3{font-size:1em;margin:.2em 0}
.meta{color:#555;font-size:.9em} table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left} pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}
.grid{display:grid;grid-template-columns:minmax(0,3fr) minmax(280px,2fr);gap:1.5em}
@media (max-width:1000px){.grid{grid-template-columns:1fr}}
.finding{border-left:5px solid #444;padding:.3em .8em;margin:.6em 0;background:#fafafa}
.sev{font-size:.8em;text-transform:uppercase;letter-spacing:.05em} .ev{font-size:.8em;padding-left:1em}
code{word-break:break-all} .note{font-size:.9em;color:#444} .empty{color:#777}
"""


def _figure_div(fig: Any, first: bool) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=bool(first), include_mathjax=False,
                           config=_PLOT_CONFIG))


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str, data: Dict[str, Any]) -> str:
    payload = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    from pbsvllm import __version__

    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='generator' content='pbsvllm {html.escape(__version__)}'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n{body}\n"
            f"<script type='application/json' id='pbsvllm-data'>{payload}</script>\n</body></html>\n")
