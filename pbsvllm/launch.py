"""Submit a prepared job: write the script through the transport, qsub it,
save the job record.

``submit_prepared(settings, prepared)`` is what ``pbsvllm submit`` calls
after ``pbsvllm.render.prepare_job``; ``submit_job(target, job)`` is the same
with the two typed inputs spelled out (what tests and benchmarks build). The rendered script is written (and
kept) before qsub runs, so a refused submission says exactly where the
script is to fix and resubmit by hand.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import PbsvllmError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.models import JobState, ServerState
from pbsvllm.transport.base import Transport

if TYPE_CHECKING:
    from pbsvllm.config import Settings
    from pbsvllm.render import PreparedJob
    from pbsvllm.scheduler.base import JobStatus, Scheduler, SubmitOptions

#: Placeholders the prepared paths may hold for the job id (known only after qsub).
_JOB_ID_PLACEHOLDERS = ("{job_id}", "${PBS_JOBID}", "$PBS_JOBID")


def fill_job_id(path: str, job_id: str) -> str:
    for ph in _JOB_ID_PLACEHOLDERS:
        path = path.replace(ph, job_id)
    return path


@dataclasses.dataclass(frozen=True)
class SubmitTarget:
    """Where a job goes: what :func:`submit_job` needs of the settings."""

    home: str
    host: Optional[str] = None
    scheduler: str = "auto"
    profile: str = ""
    registries: Tuple[str, ...] = ()
    api_key_env: str = "VLLM_API_KEY"
    api_key_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, alias: str) -> SubmitTarget:
        return cls(home=settings.home, host=settings.host,
                   scheduler=settings.scheduler or settings.profile.scheduler or "auto",
                   profile=settings.profile.name, registries=tuple(settings.registries_for(alias)),
                   api_key_env=settings.api_key_env or "VLLM_API_KEY", api_key_file=settings.api_key_file or "")


@dataclasses.dataclass(frozen=True)
class SubmitJob:
    """A rendered job script and where it and its outputs go. ``log_path``
    and ``server_info_path`` may hold ``{job_id}`` (known after qsub)."""

    alias: str
    script_text: str
    script_path: str
    model: str = ""
    served_model_name: str = ""
    log_path: str = ""
    server_info_path: str = ""
    dirs: Tuple[str, ...] = ()  # folders created (0700) before qsub
    port: Optional[int] = None
    plan: Dict[str, Any] = dataclasses.field(default_factory=dict)  # Plan.to_json()

    @classmethod
    def from_prepared(cls, prepared: PreparedJob) -> SubmitJob:
        return cls(alias=prepared.alias, script_text=prepared.script_text, script_path=prepared.script_path,
                   model=prepared.model, served_model_name=prepared.served_model_name,
                   log_path=prepared.log_path, server_info_path=prepared.server_info_path,
                   dirs=tuple(prepared.dirs), port=prepared.port, plan=prepared.plan.to_json())


def submit_prepared(settings: Settings, prepared: PreparedJob, *, transport: Optional[Transport] = None,
                    scheduler: Optional[Scheduler] = None, store: Optional[JobStore] = None,
                    options: Optional[SubmitOptions] = None) -> JobRecord:
    """:func:`submit_job` for the render step's PreparedJob and the resolved settings."""
    return submit_job(SubmitTarget.from_settings(settings, prepared.alias), SubmitJob.from_prepared(prepared),
                      transport=transport, scheduler=scheduler, store=store, options=options)


def submit_job(
    target: SubmitTarget,
    job: SubmitJob,
    *,
    transport: Optional[Transport] = None,
    scheduler: Optional[Scheduler] = None,
    store: Optional[JobStore] = None,
    options: Optional[SubmitOptions] = None,
) -> JobRecord:
    """Write ``job``'s script on the target, submit it, record the job.

    ``transport``/``scheduler``/``store`` may be injected (tests, benchmarks).
    """
    from pbsvllm.scheduler import get_scheduler
    from pbsvllm.transport import get_transport

    if transport is None:
        transport = get_transport(target.host)
    if scheduler is None:
        name = target.scheduler or "auto"
        if name == "torque":
            # Many "Torque" sites are Slurm behind Torque wrappers: check once
            # at submit; the record keeps the answer for status and cancel.
            from pbsvllm.scheduler.detect import detect

            if detect(transport) == "slurm-torque":
                name = "slurm-torque"
        scheduler = get_scheduler(name, transport, home=target.home)
    store = store or JobStore(target.home)

    script_path = transport.expanduser(job.script_path)
    if not job.script_text or not script_path:
        raise PbsvllmError("internal: the prepared job has no script text or script path")
    where = f"{transport.host}:{script_path}" if not transport.is_local else script_path
    transport.write_text(script_path, job.script_text, mode=0o700)
    # The folders the job writes to must exist before qsub: the script's
    # `#PBS -o <log_dir>/` is opened by the scheduler before the script runs
    # (Slurm fails the launch, PBS cannot deliver the output).
    dirs = [transport.expanduser(d) for d in job.dirs]
    if dirs:
        rc, _out, err = transport.run(["mkdir", "-p", "-m", "700", "--", *dirs], timeout=60)
        if rc != 0:
            raise PbsvllmError(f"cannot create {', '.join(dirs)} on {transport.host}: {err.strip()}",
                               hint="check that PBSVLLM_HOME and the profile's log_dir are writable")
    # the record must be writable BEFORE qsub: a job that runs untracked holds a node
    # and never gets registered, cleaned up or cancelled by pbsvllm
    store.check_writable()
    try:
        job_id = scheduler.submit(script_path, options)
    except PbsvllmError as exc:
        exc.message = f"{exc.message}. The rendered script is kept at {where}"
        exc.args = (exc.message,)
        raise
    log_path = fill_job_id(job.log_path, job_id)
    if log_path:
        log_path = transport.expanduser(log_path)
    info_path = job.server_info_path
    if info_path:
        info_path = transport.expanduser(fill_job_id(info_path, job_id))
    else:
        from pbsvllm.serverinfo import default_path

        info_path = default_path(target.home, job_id)
    record = JobRecord(
        job_id=job_id,
        alias=job.alias,
        model=job.model,
        served_model_name=job.served_model_name or job.alias,
        profile=target.profile,
        scheduler=scheduler.name,
        host=target.host,
        submitted_at=time.time(),
        script_path=script_path,
        log_path=log_path,
        server_info_path=info_path,
        port=job.port,
        registries=list(target.registries),
        api_key_env=target.api_key_env,
        api_key_file=target.api_key_file,
        plan=dict(job.plan),
        server_state=ServerState.NONE,
    )
    try:
        store.create(record)
    except (OSError, PbsvllmError) as exc:
        kept = _keep_record_elsewhere(record)
        why = exc.message if isinstance(exc, PbsvllmError) else (exc.strerror or str(exc))
        raise PbsvllmError(
            f"job {job_id} WAS SUBMITTED and runs, but its record could not be written in {store.dir} ({why}); "
            f"pbsvllm does not track it. Cancel it with: {_cancel_command(scheduler.name, job_id)}"
            + (f"; its record was kept at {kept} (copy it into {store.dir} to track the job)" if kept else ""),
            hint="free space or fix PBSVLLM_HOME's permissions",
        ) from None
    return record


def _cancel_command(scheduler_name: str, job_id: str) -> str:
    if scheduler_name == "local":
        return f"pbsvllm cancel {job_id} (once its record is back), or kill the job's process group"
    if scheduler_name == "slurm-torque":
        return f"scancel {job_id.split('.', 1)[0]}"
    return f"qdel {job_id}"


def _keep_record_elsewhere(record: JobRecord) -> Optional[str]:
    """Write the record where it can still go (the temp folder); None if nowhere."""
    import json
    import tempfile

    from pbsvllm.fileio import atomic_write

    path = os.path.join(tempfile.gettempdir(), f"pbsvllm-record-{os.getuid()}-{record.job_id}.json")
    try:
        atomic_write(path, json.dumps(record.to_dict(), indent=2, sort_keys=True, default=str) + "\n", 0o600)
    except OSError:
        return None
    return path


# ---------------------------------------------------------------- status / cancel


def _status_key(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("walltime_used_s", "walltime_left_s")}


def refresh_statuses(
    store: JobStore,
    records: Sequence[JobRecord],
    *,
    transport_for: Optional[Callable[[Optional[str]], Transport]] = None,
    scheduler_for: Optional[Callable[[Optional[str], str], Scheduler]] = None,
    skip_terminal: bool = True,
    timeout_s: Optional[float] = None,
) -> Tuple[Dict[str, JobStatus], List[str]]:
    """Ask each (host, scheduler) group of ``records`` for its jobs' states in
    ONE scheduler call per group; cache the answers in the records.

    Jobs whose cached state is already final are not asked again
    (``skip_terminal``). Returns ``(statuses by job id, errors)``; a group
    that cannot be reached adds a one-line error and keeps its cached rows.
    """
    from pbsvllm.scheduler import get_scheduler
    from pbsvllm.transport import get_transport

    transport_for = transport_for or get_transport
    groups: Dict[Tuple[Optional[str], str], List[JobRecord]] = {}
    for rec in records:
        if skip_terminal and rec.last_state is not None and rec.last_state.is_terminal:
            continue
        groups.setdefault((rec.host, rec.scheduler or "auto"), []).append(rec)
    statuses: Dict[str, JobStatus] = {}
    errors: List[str] = []
    for (host, sched_name), recs in groups.items():
        try:
            if scheduler_for is not None:
                sched = scheduler_for(host, sched_name)
            else:
                sched = get_scheduler(sched_name, transport_for(host), home=store.home, timeout_s=timeout_s)
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
            if st.state == JobState.UNKNOWN:
                continue  # shown as unknown, never cached: the record keeps what was last known
            d = st.to_dict()
            cached = rec.last_status.to_dict() if rec.last_status is not None else {}
            if _status_key(d) != _status_key(cached) or now - (rec.last_status_at or 0) > 60:
                rec.last_status, rec.last_status_at = st, now
                changed[rec.job_id] = {"last_status": st, "last_status_at": now}
        if changed:
            store.update_many(changed)
    return statuses, errors


def cancel_job(store: JobStore, alias_or_id: str, *, force: bool = False, transport: Optional[Transport] = None,
               scheduler: Optional[Scheduler] = None) -> Tuple[JobRecord, str]:
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
