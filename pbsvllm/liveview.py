"""The live server view of ``pbsvllm status``: server state, URL, engine
metrics and the registries that point at each server.

``live_rows`` fills the rows :mod:`pbsvllm.statusview` builds from job
records and scheduler states: the servers of running jobs are probed
concurrently with short timeouts (:func:`pbsvllm.health.check_many`),
metrics come from the end of each running job's log (summed over
data-parallel engines), and every known registry is read once to list the
entries pointing at each server. It changes no registry: entries that point
at servers of jobs that have ended are only collected (``LiveView.ended``).

``remove_ended_entries`` is the separate, explicit step that removes them
(``pbsvllm status`` runs it unless ``--keep-ended``; never an entry that
points at a live server).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from pbsvllm import serverinfo
from pbsvllm.errors import PbsvllmError, ServerError
from pbsvllm.jobs import JobRecord, JobStore, with_record_key_file
from pbsvllm.logtail import LOG_END_BYTES, read_end
from pbsvllm.models import JobState, ServerState
from pbsvllm.transport.base import Transport

if TYPE_CHECKING:
    from pbsvllm.config import Settings
    from pbsvllm.registry.base import Registry

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


@dataclasses.dataclass(frozen=True)
class EndedEntry:
    """A registry entry that points at the server of a job that has ended."""

    row: int  # index of the job's status row
    registry: Registry
    alias: str
    url: str
    job_id: str
    label: str  # as listed in the row's ``registries``: alias@spec


@dataclasses.dataclass
class LiveView:
    notes: List[str] = dataclasses.field(default_factory=list)
    ended: List[EndedEntry] = dataclasses.field(default_factory=list)


def live_rows(settings: Settings, records: Sequence[JobRecord], rows: List[Dict[str, Any]], *,
              store: Optional[JobStore] = None, probe_timeout: float = 1.5,
              transport_for: Optional[Callable[[Optional[str]], Optional[Transport]]] = None,
              gone: Optional[Set[str]] = None) -> LiveView:
    """Fill ``server_state``, ``url``, ``metrics`` and ``registries`` of status rows.

    Servers of running jobs are probed concurrently (short timeouts); metrics
    come from the end of each job's log; registries are every known registry
    (configured, the record's, where the watcher wrote) with an entry for the
    server's URL. No registry is changed: the entries of jobs that have ended
    are returned in ``LiveView.ended`` for :func:`remove_ended_entries`.

    A job has ended only on positive evidence: a final state from its
    scheduler, or the scheduler saying it does not know the id (``gone``:
    job ids) while the job's server does not answer at all. UNKNOWN alone
    (silence, garbage, an unfamiliar letter) changes nothing: the row shows
    it and the record, the registries and the saved server state stay.
    """
    from pbsvllm import health
    from pbsvllm.registry import open_registries, spec_of

    if transport_for is None:
        from pbsvllm.transport import get_transport

        transport_for = get_transport
    view = LiveView()
    notes = view.notes
    by_id = {r.job_id: r for r in records}
    ended = {s.value for s in JobState if s.is_terminal}
    dead_gone = _gone_and_silent(rows, by_id, gone or set(), probe_timeout)
    # URLs of servers still alive: never removed, even if an ended job once had the same host:port
    live_urls = set()
    for row in rows:
        if (row.get("state") or "UNKNOWN") not in ended and str(row.get("job_id")) not in dead_gone:
            rec = by_id.get(str(row.get("job_id")))
            for u in [row.get("url") or ""] + (list(rec.watch.urls) if rec else []):
                if u:
                    live_urls.add(u.rstrip("/"))
    to_probe: List[Tuple[int, str, str]] = []
    api_key_err: Optional[str] = None
    reg_cache: Dict[str, Optional[Tuple[Registry, Dict[str, List[Any]]]]] = {}
    for i, row in enumerate(rows):
        rec = by_id.get(str(row.get("job_id")))
        if rec is None:
            continue
        try:
            tr = transport_for(rec.host)
        except PbsvllmError:
            tr = None
        state = row.get("state") or "UNKNOWN"
        saved = rec.server_state
        url = row.get("url") or rec.url or ""
        if not url and tr is not None and state == JobState.RUNNING.value and rec.server_info_path:
            info = serverinfo.try_read(tr, rec.server_info_path)
            if info is not None:
                try:
                    url = serverinfo.endpoint_url(info, alias=row.get("alias", ""))
                except ServerError:
                    url = ""
        row["url"] = url
        terminal = state in ended or str(row.get("job_id")) in dead_gone
        metrics = None
        if tr is not None and state in (JobState.RUNNING.value, JobState.COMPLETING.value):
            # only a live server has current figures
            metrics = metrics_from_lines(read_end(tr, rec.log_path, LOG_END_BYTES))
        row["metrics"] = metrics or dict.fromkeys(METRIC_KEYS)  # same keys, null: no stats (yet)
        if state in (JobState.PENDING.value, JobState.HELD.value):
            row["server_state"] = ServerState.NONE.value
        elif terminal:
            if saved == ServerState.FAILED or (saved != ServerState.READY and state == JobState.FAILED.value):
                row["server_state"] = ServerState.FAILED.value
            else:
                row["server_state"] = ServerState.STOPPED.value
        elif state == JobState.UNKNOWN.value:
            # shown as unknown; the server is probed for the row, nothing is saved
            row["server_state"] = saved.value
            if url:
                to_probe.append((i, url, rec.served_model_name or rec.alias))
        elif state == JobState.RUNNING.value and url:
            to_probe.append((i, url, rec.served_model_name or rec.alias))
            row["server_state"] = (ServerState.FAILED if saved == ServerState.FAILED else ServerState.STARTING).value
        elif state == JobState.RUNNING.value:
            row["server_state"] = (ServerState.FAILED if saved == ServerState.FAILED else ServerState.STARTING).value
        else:
            row["server_state"] = saved.value
        # registries pointing at it
        specs: List[str] = list(settings.registries_for(row.get("alias") or ""))
        specs.extend(rec.registries)
        specs.extend(rec.watch.registered)
        specs = list(dict.fromkeys(specs))
        pointing: List[str] = []
        urls = [u for u in ([url] + list(rec.watch.urls)) if u]
        for spec in specs if urls else []:
            if spec not in reg_cache:  # each registry is read once per status, not once per row
                reg_cache[spec] = None
                for reg in _open_quiet(open_registries, [spec], notes):
                    if os.path.exists(reg.path):
                        try:
                            reg_cache[spec] = (reg, reg.read())
                        except PbsvllmError as exc:
                            notes.append(str(exc))
            cached = reg_cache[spec]
            if cached is None:
                continue
            reg, entries = cached
            for alias, eps in entries.items():
                for e in eps:
                    if any(e.url.rstrip("/") == u.rstrip("/") for u in urls):
                        if e.job_id is not None and e.job_id != str(row.get("job_id")):
                            continue  # another job's entry that happens to have this URL
                        if terminal and e.job_id is None and e.url.rstrip("/") in live_urls:
                            continue  # no job id to tell: the URL serves a live job now, not this one
                        label = f"{alias}@{spec_of(reg)}"
                        pointing.append(label)
                        if terminal:
                            view.ended.append(EndedEntry(i, reg, alias, e.url, str(row.get("job_id")), label))
        row["registries"] = sorted(set(pointing))
        if store is not None and terminal and saved.value != row["server_state"]:
            try:
                store.update(str(row["job_id"]), server_state=row["server_state"])
            except PbsvllmError:
                pass
    if to_probe:
        try:
            keyed = with_record_key_file(settings, [by_id[str(rows[i].get("job_id"))] for i, _u, _m in to_probe])
            key = health.resolve_api_key(keyed.api_key_file, settings.api_key_env or "VLLM_API_KEY")
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
    return view


def _gone_and_silent(rows: List[Dict[str, Any]], by_id: Dict[str, JobRecord], gone: Set[str],
                     timeout: float) -> Set[str]:
    """Job ids of UNKNOWN rows whose scheduler said it does not know the id and
    whose every server URL is unreachable (or that never had one)."""
    from pbsvllm import health

    out: Set[str] = set()
    targets: List[Tuple[str, str, str]] = []
    for row in rows:
        jid = str(row.get("job_id"))
        if jid not in gone or (row.get("state") or "UNKNOWN") != JobState.UNKNOWN.value:
            continue
        rec = by_id.get(jid)
        urls = [u for u in [row.get("url") or (rec.url if rec else "")] + (list(rec.watch.urls) if rec else []) if u]
        if not urls:
            out.add(jid)
        targets.extend((jid, u, (rec.served_model_name or rec.alias) if rec else "") for u in urls)
    if targets:
        # no key: a live server answering 401 still counts as live
        results = health.check_many([(u, m) for _, u, m in targets], None, timeout=timeout, completion_timeout=timeout)
        answering = {jid for (jid, _u, _m), res in zip(targets, results) if res.stage != "unreachable"}
        out |= {jid for jid, _u, _m in targets} - answering
    return out


def remove_ended_entries(view: LiveView, rows: List[Dict[str, Any]]) -> List[str]:
    """Remove the registry entries ``live_rows`` found pointing at servers of
    jobs that have ended (a dead URL in a registry only makes clients fail);
    drop them from the rows' ``registries``. Returns one note per change."""
    notes: List[str] = []
    for e in view.ended:
        try:
            e.registry.unregister_server(e.alias, e.url, e.job_id)
        except PbsvllmError as exc:
            notes.append(str(exc))
            continue
        notes.append(f"removed {e.alias} -> {e.url} from {e.registry.path}: job {e.job_id} has ended")
        regs = rows[e.row].get("registries") or []
        rows[e.row]["registries"] = [r for r in regs if r != e.label]
    return notes


def _open_quiet(open_registries: Callable[..., Any], specs: List[str], notes: List[str]) -> List[Any]:
    out = []
    for s in specs:
        try:
            out.extend(open_registries([s]))
        except PbsvllmError as exc:
            notes.append(str(exc))
    return out
