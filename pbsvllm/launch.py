"""Submit a prepared job: write the script through the transport, qsub it,
save the job record.

``submit_prepared(settings, prepared)`` is what ``pbsvllm submit`` calls
after ``pbsvllm.render.prepare_job``. The rendered script is written (and
kept) before qsub runs, so a refused submission says exactly where the
script is to fix and resubmit by hand.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

from pbsvllm.errors import PbsvllmError
from pbsvllm.jobs import JobRecord, JobStore

#: Placeholders the prepared paths may hold for the job id (known only after qsub).
_JOB_ID_PLACEHOLDERS = ("{job_id}", "${PBS_JOBID}", "$PBS_JOBID")


def fill_job_id(path: str, job_id: str) -> str:
    for ph in _JOB_ID_PLACEHOLDERS:
        path = path.replace(ph, job_id)
    return path


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def _plan_dict(plan: Any) -> Dict[str, Any]:
    if plan is None:
        return {}
    if isinstance(plan, dict):
        return plan
    for meth in ("to_json", "to_dict", "as_dict"):
        fn = getattr(plan, meth, None)
        if callable(fn):
            value = fn()
            if isinstance(value, str):
                import json

                return json.loads(value)
            return dict(value)
    import dataclasses

    if dataclasses.is_dataclass(plan):
        return dataclasses.asdict(plan)
    return {"repr": repr(plan)}


def submit_prepared(
    settings: Any,
    prepared: Any,
    *,
    transport: Any = None,
    scheduler: Any = None,
    store: Optional[JobStore] = None,
    options: Any = None,
) -> JobRecord:
    """Write ``prepared``'s script on the target, submit it, record the job.

    ``settings``: the resolved :class:`pbsvllm.config.Settings` (host,
    scheduler, home, profile). ``prepared``: the render step's PreparedJob
    (script text, script/log/server-info paths, plan, alias, model).
    ``transport``/``scheduler``/``store`` may be injected (tests, benchmarks).
    """
    from pbsvllm.scheduler import get_scheduler
    from pbsvllm.transport import get_transport

    host = _get(settings, "host")
    home = _get(settings, "home")
    if transport is None:
        transport = get_transport(host)
    if scheduler is None:
        profile = _get(settings, "profile")
        name = _get(settings, "scheduler") or _get(profile, "scheduler") or "auto"
        if name == "torque":
            # Many "Torque" sites are Slurm behind Torque wrappers: check once
            # at submit; the record keeps the answer for status and cancel.
            from pbsvllm.scheduler.detect import detect

            if detect(transport) == "slurm-torque":
                name = "slurm-torque"
        kw = {"home": home} if home else {}
        scheduler = get_scheduler(name, transport, **kw)
    store = store or JobStore(home)

    script_text = _get(prepared, "script", "script_text")
    script_path = transport.expanduser(str(_get(prepared, "script_path")))
    if not script_text or not script_path:
        raise PbsvllmError("internal: the prepared job has no script text or script path")
    where = f"{transport.host}:{script_path}" if not transport.is_local else script_path
    transport.write_text(script_path, script_text, mode=0o700)
    # The folders the job writes to must exist before qsub: the script's
    # `#PBS -o <log_dir>/` is opened by the scheduler before the script runs
    # (Slurm fails the launch, PBS cannot deliver the output).
    dirs = [transport.expanduser(str(d)) for d in (_get(prepared, "dirs", default=()) or ())]
    if dirs:
        rc, _out, err = transport.run(["mkdir", "-p", "-m", "700", "--", *dirs], timeout=60)
        if rc != 0:
            raise PbsvllmError(f"cannot create {', '.join(dirs)} on {transport.host}: {err.strip()}",
                               hint="check that PBSVLLM_HOME and the profile's log_dir are writable")
    if options is None:
        options = _get(prepared, "submit_options", "options")
    try:
        job_id = scheduler.submit(script_path, options)
    except PbsvllmError as exc:
        exc.message = f"{exc.message}. The rendered script is kept at {where}"
        exc.args = (exc.message,)
        raise
    alias = str(_get(prepared, "alias", default="") or "")
    profile = _get(settings, "profile")
    registries_for = getattr(settings, "registries_for", None)
    registries = list(registries_for(alias)) if callable(registries_for) else list(_get(settings, "registries", default=()) or ())
    log_path = fill_job_id(str(_get(prepared, "log_path", default="") or ""), job_id)
    if log_path:
        log_path = transport.expanduser(log_path)
    info_path = str(_get(prepared, "server_info_path", default="") or "")
    if info_path:
        info_path = transport.expanduser(fill_job_id(info_path, job_id))
    elif home:
        info_path = os.path.join(home, "run", f"{job_id}.server.json")
    record = JobRecord(
        job_id=job_id,
        alias=alias,
        model=str(_get(prepared, "model", default="") or ""),
        served_model_name=str(_get(prepared, "served_model_name", default="") or alias),
        profile=str(_get(profile, "name", default="") or ""),
        scheduler=scheduler.name,
        host=host,
        submitted_at=time.time(),
        script_path=script_path,
        log_path=log_path,
        server_info_path=info_path,
        port=_get(prepared, "port"),
        registries=registries,
        api_key_env=str(_get(settings, "api_key_env", default="VLLM_API_KEY") or "VLLM_API_KEY"),
        plan=_plan_dict(_get(prepared, "plan")),
        server_state="none",
    )
    store.save(record)
    return record


# ---------------------------------------------------------------- status / cancel


def _status_key(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("walltime_used_s", "walltime_left_s")}


def refresh_statuses(
    store: JobStore,
    records: Any,
    *,
    transport_for: Any = None,
    scheduler_for: Any = None,
    skip_terminal: bool = True,
) -> "tuple[Dict[str, Any], list]":
    """Ask each (host, scheduler) group of ``records`` for its jobs' states in
    ONE scheduler call per group; cache the answers in the records.

    Jobs whose cached state is already final are not asked again
    (``skip_terminal``). Returns ``(statuses by job id, errors)``; a group
    that cannot be reached adds a one-line error and keeps its cached rows.
    """
    from pbsvllm.models import JobState
    from pbsvllm.scheduler import get_scheduler
    from pbsvllm.transport import get_transport

    transport_for = transport_for or get_transport
    groups: Dict[Any, list] = {}
    for rec in records:
        cached = rec.last_status or {}
        if skip_terminal and cached.get("state") in (s.value for s in JobState if s.is_terminal):
            continue
        groups.setdefault((rec.host, rec.scheduler or "auto"), []).append(rec)
    statuses: Dict[str, Any] = {}
    errors: list = []
    for (host, sched_name), recs in groups.items():
        try:
            if scheduler_for is not None:
                sched = scheduler_for(host, sched_name)
            else:
                sched = get_scheduler(sched_name, transport_for(host), home=store.home)
            got = sched.status([r.job_id for r in recs])
        except PbsvllmError as exc:
            errors.append(f"{host or 'localhost'} ({sched_name}): {exc}")
            continue
        now = time.time()
        changed: Dict[str, Dict[str, Any]] = {}
        for rec in recs:
            st = got.get(rec.job_id)
            if st is None:
                continue
            statuses[rec.job_id] = st
            d = st.to_dict()
            if _status_key(d) != _status_key(rec.last_status or {}) or now - (rec.last_status_at or 0) > 60:
                rec.last_status, rec.last_status_at = d, now
                changed[rec.job_id] = {"last_status": d, "last_status_at": now}
        if changed:
            store.update_many(changed)
    return statuses, errors


def cancel_job(store: JobStore, alias_or_id: str, *, force: bool = False, transport: Any = None, scheduler: Any = None) -> "tuple[JobRecord, str]":
    """Cancel a tracked job (qdel / qdel -W force / local SIGTERM+SIGKILL);
    records ``cancelled_at``. Returns the record and the scheduler's message."""
    from pbsvllm.scheduler import get_scheduler
    from pbsvllm.transport import get_transport

    rec = store.find(alias_or_id)
    if scheduler is None:
        transport = transport or get_transport(rec.host)
        scheduler = get_scheduler(rec.scheduler or "auto", transport, home=store.home)
    message = scheduler.cancel(rec.job_id, force=force)
    rec = store.update(rec.job_id, cancelled_at=time.time())
    return rec, message
