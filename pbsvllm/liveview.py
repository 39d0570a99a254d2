"""The live server view of ``pbsvllm status``: server state, URL, engine
metrics and the registries that point at each server.

``live_rows`` fills the rows :mod:`pbsvllm.statusview` builds from job
records and scheduler states: the servers of running jobs are probed
concurrently with short timeouts (:func:`pbsvllm.health.check_many`),
metrics come from the end of each running job's log (summed over
data-parallel engines), and every known registry is read once to list the
entries pointing at each server -- and to remove entries of jobs that have
ended (never one that points at a live server).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from pbsvllm.errors import PbsvllmError, ServerError
from pbsvllm.models import JobState, ServerState
from pbsvllm.watcher import JobProgress, Watcher, endpoint_url

LOG_TAIL_BYTES = 256 * 1024
METRIC_KEYS = ("generation_tokens_per_s", "prompt_tokens_per_s", "running", "waiting",
               "kv_cache_usage_pct", "prefix_cache_hit_pct", "kv_device", "engines")  # = status.schema.json


def metrics_from_lines(lines: Iterable[str]) -> Optional[Dict[str, Any]]:
    """The latest engine-stats figures from log lines: the last line of each
    engine, throughput and requests summed over data-parallel engines, KV
    cache and prefix-hit percentages averaged. None if no stats line."""
    from pbsvllm.vllmlog import parse_stats_line, strip_line

    latest: Dict[Any, Any] = {}
    for raw in lines:
        if "throughput:" not in raw:
            continue
        st = parse_stats_line(strip_line(raw))
        if st is None:
            continue
        if st.engine is None and st.engines_aggregated is None:
            latest.clear()  # V0 (one engine): only the last line counts
        latest[st.engine] = st
    if not latest:
        return None
    stats = list(latest.values())

    def mean(vals: List[Optional[float]]) -> Optional[float]:
        got = [v for v in vals if v is not None]
        return round(sum(got) / len(got), 2) if got else None

    return {
        "generation_tokens_per_s": round(sum(s.generation_tokens_per_s for s in stats), 2),
        "prompt_tokens_per_s": round(sum(s.prompt_tokens_per_s for s in stats), 2),
        "running": sum(s.running for s in stats),
        "waiting": sum(s.waiting for s in stats),
        "kv_cache_usage_pct": mean([s.kv_cache_usage_pct for s in stats]),
        "prefix_cache_hit_pct": mean([s.prefix_cache_hit_pct for s in stats]),
        "kv_device": stats[-1].kv_device,
        "engines": len(stats) if stats[0].engines_aggregated is None else stats[0].engines_aggregated,
    }


def read_log_end(path: str, transport: Any = None, nbytes: int = LOG_TAIL_BYTES) -> List[str]:
    """The complete lines among the last ``nbytes`` of a (possibly remote) log."""
    if not path:
        return []
    try:
        if transport is None or getattr(transport, "is_local", False):
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - nbytes))
                data = fh.read()
                partial_first = size > nbytes
        else:
            rc, out, _err = transport.run(["tail", "-c", str(nbytes), path], timeout=30)
            if rc != 0:
                return []
            data, partial_first = out.encode("utf-8"), True
    except (OSError, PbsvllmError):
        return []
    lines = [l.rstrip("\r") for l in data.decode("utf-8", "replace").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines[1:] if partial_first and lines else lines


def _rget(rec: Any, key: str, default: Any = None) -> Any:
    getter = getattr(rec, "get", None)
    if callable(getter):
        v = getter(key, default)
        return default if v is None else v
    return getattr(rec, key, default)


def live_rows(settings: Any, records: Sequence[Any], rows: List[Dict[str, Any]], *, store: Any = None,
              probe_timeout: float = 1.5, transport_for: Optional[Callable[[Any], Any]] = None,
              reconcile: bool = True) -> List[str]:
    """Fill ``server_state``, ``url``, ``metrics`` and ``registries`` of status rows.

    Servers of running jobs are probed concurrently (short timeouts); metrics
    come from the end of each job's log; registries are every known registry
    (configured, the record's, where the watcher wrote) with an entry for the
    server's URL. With ``reconcile``, entries of jobs that have ended are
    removed (a dead URL in a registry only makes clients fail). Returns notes
    for the user.
    """
    from pbsvllm import health
    from pbsvllm.registry import open_registries, spec_of

    if transport_for is None:
        from pbsvllm.transport import get_transport

        transport_for = get_transport
    notes: List[str] = []
    by_id = {str(_rget(r, "job_id")): r for r in records}
    ended = {s.value for s in JobState if s.is_terminal} | {JobState.UNKNOWN.value}
    # URLs of servers still alive: never removed, even if an ended job once had the same host:port
    live_urls = set()
    for row in rows:
        if (row.get("state") or "UNKNOWN") not in ended:
            rec = by_id.get(str(row.get("job_id")))
            for u in [row.get("url") or ""] + list(((_rget(rec, "watch", {}) or {}).get("urls") or []) if rec else []):
                if u:
                    live_urls.add(u.rstrip("/"))
    to_probe: List[Tuple[int, str, str]] = []
    api_key_err: Optional[str] = None
    reg_cache: Dict[str, Any] = {}
    for i, row in enumerate(rows):
        rec = by_id.get(str(row.get("job_id")))
        if rec is None:
            continue
        try:
            tr = transport_for(_rget(rec, "host"))
        except PbsvllmError:
            tr = None
        state = row.get("state") or "UNKNOWN"
        saved = str(_rget(rec, "server_state", "none") or "none")
        url = row.get("url") or _rget(rec, "url", "") or ""
        if not url and state == JobState.RUNNING.value and _rget(rec, "server_info_path"):
            info = Watcher(None, tr, probe=lambda u, m: None)._server_info(
                JobProgress(job_id=str(row["job_id"]), alias="", served_model="",
                            info_path=_rget(rec, "server_info_path")))
            if info:
                try:
                    url = endpoint_url(info, alias=row.get("alias", ""))
                except ServerError:
                    url = ""
        row["url"] = url
        terminal = state in ended
        metrics = None
        if state in (JobState.RUNNING.value, JobState.COMPLETING.value):  # only a live server has current figures
            metrics = metrics_from_lines(read_log_end(_rget(rec, "log_path", ""), tr))
        row["metrics"] = metrics or dict.fromkeys(METRIC_KEYS)  # same keys, null: no stats (yet)
        if state in (JobState.PENDING.value, JobState.HELD.value):
            row["server_state"] = ServerState.NONE.value
        elif terminal:
            if saved == ServerState.FAILED.value or (saved != ServerState.READY.value and state == JobState.FAILED.value):
                row["server_state"] = ServerState.FAILED.value
            else:
                row["server_state"] = ServerState.STOPPED.value
        elif state == JobState.RUNNING.value and url:
            to_probe.append((i, url, str(_rget(rec, "served_model_name") or _rget(rec, "alias") or "")))
            row["server_state"] = ServerState.FAILED.value if saved == ServerState.FAILED.value else ServerState.STARTING.value
        elif state == JobState.RUNNING.value:
            row["server_state"] = ServerState.FAILED.value if saved == ServerState.FAILED.value else ServerState.STARTING.value
        else:
            row["server_state"] = saved
        # registries pointing at it
        specs: List[str] = []
        regs_for = getattr(settings, "registries_for", None)
        if callable(regs_for):
            specs.extend(regs_for(row.get("alias") or ""))
        specs.extend(str(s) for s in (_rget(rec, "registries", []) or []))
        watch = _rget(rec, "watch", {}) or {}
        specs.extend(str(s) for s in (watch.get("registered") or []))
        specs = list(dict.fromkeys(specs))
        pointing: List[str] = []
        urls = [u for u in ([url] + list(watch.get("urls") or [])) if u]
        for spec in specs if urls else []:
            if spec not in reg_cache:  # each registry is read once per status, not once per row
                reg_cache[spec] = None
                for reg in _open_quiet(open_registries, [spec], notes):
                    if os.path.exists(reg.path):
                        try:
                            reg_cache[spec] = (reg, reg.read())
                        except PbsvllmError as exc:
                            notes.append(str(exc))
            if reg_cache[spec] is None:
                continue
            reg, entries = reg_cache[spec]
            changed = False
            for alias, eps in entries.items():
                for e in eps:
                    if any(e.url.rstrip("/") == u.rstrip("/") for u in urls):
                        if e.job_id is not None and e.job_id != str(row.get("job_id")):
                            continue  # another job's entry that happens to have this URL
                        if terminal and reconcile:
                            if e.job_id is None and e.url.rstrip("/") in live_urls:
                                continue  # no job id to tell: the URL serves a live job now, keep it
                            try:
                                reg.unregister_server(alias, e.url, str(row.get("job_id")))
                                changed = True
                                notes.append(f"removed {alias} -> {e.url} from {reg.path}: job {row['job_id']} has ended")
                            except PbsvllmError as exc:
                                notes.append(str(exc))
                        else:
                            pointing.append(f"{alias}@{spec_of(reg)}")
            if changed:
                reg_cache.pop(spec, None)
        row["registries"] = sorted(set(pointing))
        if store is not None and terminal and saved not in (row["server_state"],):
            try:
                store.update(str(row["job_id"]), server_state=row["server_state"])
            except PbsvllmError:
                pass
    if to_probe:
        try:
            key = health.resolve_api_key(getattr(settings, "api_key_file", None),
                                         getattr(settings, "api_key_env", "VLLM_API_KEY") or "VLLM_API_KEY")
        except PbsvllmError as exc:
            key, api_key_err = None, str(exc)
        results = health.check_many([(u, m) for _, u, m in to_probe], key, timeout=probe_timeout,
                                    completion_timeout=max(probe_timeout, 5.0))
        for (i, _u, _m), res in zip(to_probe, results):
            row = rows[i]
            if res.ready:
                row["server_state"] = ServerState.READY.value
            elif res.stage in ("unauthorized", "model_missing", "completion_failed", "models_error"):
                if row["server_state"] != ServerState.FAILED.value:
                    row["server_state"] = ServerState.UNKNOWN.value
                row["server_detail"] = res.detail
            # unreachable: keep starting (or failed, from the watcher)
    if api_key_err:
        notes.append(api_key_err)
    return notes


def _open_quiet(open_registries: Callable[..., Any], specs: List[str], notes: List[str]) -> List[Any]:
    out = []
    for s in specs:
        try:
            out.extend(open_registries([s]))
        except PbsvllmError as exc:
            notes.append(str(exc))
    return out
