"""Rows of ``pbsvllm status``: a pure function of (job records, scheduler statuses).

No I/O here. ``build_rows`` gives one dict per job (the ``--json`` output);
``format_table`` renders them for a terminal. Columns are declared in
``COLUMNS`` so later features (server state, URL, engine metrics) add
entries there and keys in ``build_row`` without touching the rest.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pbsvllm.jobs import JobRecord
from pbsvllm.models import JobState

if TYPE_CHECKING:
    from pbsvllm.scheduler.base import JobStatus


def fmt_duration(seconds: Optional[float]) -> str:
    """Seconds -> ``H:MM:SS`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def build_row(record: JobRecord, status: Optional[JobStatus] = None, *, now: Optional[float] = None,
              stale: bool = False) -> Dict[str, Any]:
    """One status row. ``status``: the scheduler's answer; None -> the
    record's cached ``last_status`` (``stale`` True)."""
    now = time.time() if now is None else now
    if status is None:
        status, stale = record.last_status, True
    st: Dict[str, Any] = status.to_dict() if status is not None else {}
    state = str(st.get("state") or JobState.UNKNOWN.value)
    cancelled_at = record.cancelled_at
    if cancelled_at and state in (JobState.COMPLETED.value, JobState.FAILED.value, JobState.UNKNOWN.value):
        state = JobState.CANCELLED.value
    used = st.get("walltime_used_s")
    limit = st.get("walltime_limit_s")
    if stale and used is not None and state == JobState.RUNNING.value:
        at = record.last_status_at
        if at:
            used = int(used + max(0, now - at))
    active = state in (JobState.PENDING.value, JobState.HELD.value, JobState.RUNNING.value, JobState.COMPLETING.value)
    left = None if used is None or limit is None or not active else max(0, int(limit) - int(used))
    return {
        "alias": record.alias,
        "job_id": record.job_id,
        "host": record.host or "localhost",
        "scheduler": record.scheduler,
        "state": state,
        "raw_state": st.get("raw_state") or "",
        "queue": st.get("queue") or "",
        "node": st.get("exec_host") or "",
        "walltime_used_s": used,
        "walltime_limit_s": limit,
        "walltime_left_s": left,
        "exit_status": st.get("exit_status"),
        "exit_reason": st.get("exit_reason") or "",
        "comment": st.get("comment") or "",
        "submitted_at": record.submitted_at,
        "model": record.model,
        "server_state": record.server_state.value,
        "url": record.url,
        "metrics": None,
        "registries": [],
        "stale": bool(stale),
    }


def build_rows(
    records: Iterable[JobRecord],
    statuses: Mapping[str, JobStatus],
    *,
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Rows for ``records`` (in order); a job absent from ``statuses``
    shows its cached status, marked stale."""
    now = time.time() if now is None else now
    rows = []
    for rec in records:
        rows.append(build_row(rec, statuses.get(rec.job_id), now=now, stale=rec.job_id not in statuses))
    return rows


def _state_cell(row: Mapping[str, Any]) -> str:
    s = str(row["state"])
    if row.get("raw_state"):
        s += f" ({row['raw_state']})"
    if row.get("stale"):
        s += "*"
    return s


def _exit_cell(row: Mapping[str, Any]) -> str:
    if row.get("exit_status") is None:
        return ""
    return f"{row['exit_status']}: {row.get('exit_reason', '')}".strip()


#: (header, cell function). Later columns (server, URL, metrics) go here.
COLUMNS: List[Tuple[str, Callable[[Mapping[str, Any]], str]]] = [
    ("ALIAS", lambda r: r["alias"] or "-"),
    ("JOB", lambda r: str(r["job_id"])),
    ("STATE", _state_cell),
    ("QUEUE", lambda r: r["queue"] or "-"),
    ("NODE", lambda r: r["node"] or "-"),
    ("USED", lambda r: fmt_duration(r["walltime_used_s"])),
    ("LEFT", lambda r: fmt_duration(r["walltime_left_s"])),
    ("HOST", lambda r: r["host"]),
    ("EXIT", _exit_cell),
]

#: Server columns (filled by ``pbsvllm.liveview.live_rows``): shown by ``status``
#: unless --offline. Metrics are the latest engine-stats line(s) of the log,
#: summed over data-parallel engines.


def _metric(key: str, fmt: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(r: Mapping[str, Any]) -> str:
        m = r.get("metrics") or {}
        v = m.get(key)
        return "-" if v is None else fmt.format(v)
    return cell


def _kv_cell(r: Mapping[str, Any]) -> str:
    m = r.get("metrics") or {}
    if m.get("kv_cache_usage_pct") is None:
        return "-"
    return f"{m['kv_cache_usage_pct']:.1f}% {m.get('kv_device') or ''}".strip()


SERVER_COLUMNS: List[Tuple[str, Callable[[Mapping[str, Any]], str]]] = [
    ("ALIAS", lambda r: r["alias"] or "-"),
    ("JOB", lambda r: str(r["job_id"])),
    ("STATE", _state_cell),
    ("SERVER", lambda r: r.get("server_state") or "-"),
    ("URL", lambda r: r.get("url") or "-"),
    ("LEFT", lambda r: fmt_duration(r["walltime_left_s"])),
    ("GEN/s", _metric("generation_tokens_per_s", "{:.1f}")),
    ("PROMPT/s", _metric("prompt_tokens_per_s", "{:.1f}")),
    ("RUN/WAIT", lambda r: "-" if (r.get("metrics") or {}).get("running") is None
     else f"{r['metrics']['running']}/{r['metrics'].get('waiting', 0)}"),
    ("KV", _kv_cell),
    ("PREFIX", _metric("prefix_cache_hit_pct", "{:.1f}%")),
    ("REGISTRIES", lambda r: ", ".join(r.get("registries") or []) or "-"),
]


Column = Tuple[str, Callable[[Mapping[str, Any]], str]]


def format_table(rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[Column]] = None) -> str:
    cols = list(columns or COLUMNS)
    if not rows:
        return "no tracked jobs"
    from pbsvllm.safety import printable

    # job names, comments and server details come from elsewhere: one printable line per cell
    cells = [[printable(fn(r), one_line=True) for _, fn in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(cols)]
    lines = ["  ".join(h.ljust(widths[i]) for i, (h, _) in enumerate(cols)).rstrip()]
    for c in cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(c)).rstrip())
    if any(r.get("stale") for r in rows):
        lines.append("* cached state (scheduler not asked: --offline, finished, or unreachable)")
    return "\n".join(lines)
