"""The supervisor's real I/O: job records, schedulers, readiness, the router.

Each method is one effect of :class:`pbsvllm.keepalive.supervisor.Ports`.
Schedulers and transports are built per (host, scheduler) of the chain's
job records and reused; the router is the alias's own (see
``pbsvllm.router``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from pbsvllm.errors import PbsvllmError
from pbsvllm.jobs import JobRecord, JobStore
from pbsvllm.scheduler.base import JobStatus, Scheduler
from pbsvllm.transport.base import Transport

if TYPE_CHECKING:
    from pbsvllm.config import Settings

#: How long a drained server may keep finishing its in-flight requests.
DRAIN_TIMEOUT_S = 120.0


class LivePorts:
    def __init__(self, home: str, alias: str) -> None:
        self.home = home
        self.alias = alias
        self.store = JobStore(home)
        self._transports: Dict[Optional[str], Transport] = {}
        self._schedulers: Dict[Tuple[Optional[str], str], Scheduler] = {}
        self._settings_cache: Dict[str, Settings] = {}

    # -- plumbing
    def _transport(self, host: Optional[str]) -> Transport:
        if host not in self._transports:
            from pbsvllm.transport import get_transport

            self._transports[host] = get_transport(host)
        return self._transports[host]

    def _scheduler(self, rec: JobRecord) -> Scheduler:
        key = (rec.host, rec.scheduler or "auto")
        if key not in self._schedulers:
            from pbsvllm.scheduler import get_scheduler

            self._schedulers[key] = get_scheduler(key[1], self._transport(rec.host), home=self.home)
        return self._schedulers[key]

    def _record(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    # -- Ports
    def statuses(self, job_ids: Sequence[str]) -> Dict[str, JobStatus]:
        groups: Dict[Tuple[Optional[str], str], List[JobRecord]] = {}
        for jid in job_ids:
            rec = self._record(jid)
            groups.setdefault((rec.host, rec.scheduler or "auto"), []).append(rec)
        out: Dict[str, JobStatus] = {}
        for recs in groups.values():
            out.update(self._scheduler(recs[0]).status([r.job_id for r in recs]))
        return out

    def _settings(self, rec: JobRecord) -> Settings:
        """The settings of the record's profile (URL rule, API key), resolved once per profile."""
        if rec.profile not in self._settings_cache:
            from pbsvllm.config import resolve

            flags = {"home": self.home, "profile": rec.profile} if rec.profile else {"home": self.home}
            self._settings_cache[rec.profile] = resolve(flags)
        return self._settings_cache[rec.profile]

    def server_url(self, job_id: str) -> Optional[str]:
        from pbsvllm.swap import target_url

        rec = self._record(job_id)
        try:
            return target_url(self._settings(rec), rec, self._transport(rec.host))
        except PbsvllmError:
            return None  # no server-info file yet

    def is_ready(self, job_id: str, url: str) -> bool:
        from pbsvllm.health import check_ready, resolve_api_key

        rec = self._record(job_id)
        settings = self._settings(rec)
        key = resolve_api_key(settings.api_key_file, rec.api_key_env or settings.api_key_env or "VLLM_API_KEY")
        return check_ready(url, rec.served_name, key).ready

    def submit_successor(self, template_job: str) -> str:
        """The template job's rendered script, submitted again through the
        same scheduler and transport (:func:`pbsvllm.launch.submit_job`); the
        new record copies the template's, its paths carrying the new job id."""
        from pbsvllm.launch import SubmitJob, SubmitTarget, submit_job

        rec = self._record(template_job)
        transport = self._transport(rec.host)
        old = rec.job_id
        job = SubmitJob(
            alias=rec.alias, script_text=transport.read_text(rec.script_path), script_path=rec.script_path,
            model=rec.model, served_model_name=rec.served_model_name,
            log_path=rec.log_path.replace(old, "{job_id}"),
            server_info_path=rec.server_info_path.replace(old, "{job_id}"),
            port=rec.port, plan=dict(rec.plan),
        )
        target = SubmitTarget(home=self.home, host=rec.host, scheduler=rec.scheduler or "auto", profile=rec.profile,
                              registries=tuple(rec.registries), api_key_env=rec.api_key_env)
        new = submit_job(target, job, transport=transport, scheduler=self._scheduler(rec), store=self.store)
        return new.job_id

    def join(self, alias: str, url: str, job_id: str) -> None:
        from pbsvllm import router

        rec = self._record(job_id)
        router.ensure_running(alias, home=self.home, model=rec.served_model_name or alias,
                              api_key_var=rec.api_key_env or "VLLM_API_KEY")
        router.add_member(alias, url, job_id=job_id, home=self.home)

    def drain(self, alias: str, url: str) -> None:
        from pbsvllm import router

        router.drain_member(alias, url, DRAIN_TIMEOUT_S, home=self.home)
        router.remove_member(alias, url, home=self.home)

    def remove(self, alias: str, url: str) -> None:
        from pbsvllm import router

        router.remove_member(alias, url, home=self.home)

    def cancel(self, job_id: str) -> None:
        from pbsvllm.jobs import now

        rec = self._record(job_id)
        try:
            self._scheduler(rec).cancel(job_id)
        except PbsvllmError:
            # Already gone is fine; the next status says so.
            pass
        self.store.update(job_id, cancelled_at=now())

    def failure_signature(self, job_id: str, status: JobStatus) -> str:
        """The first error the log classifies (the doctor's name for it),
        else the scheduler's exit status."""
        from pbsvllm.logtail import read_end
        from pbsvllm.vllmlog import classify_error

        rec = self._record(job_id)
        if rec.log_path:
            try:
                lines = read_end(self._transport(rec.host), rec.log_path, 256 * 1024)
            except PbsvllmError:
                lines = []
            for line in lines:
                kind = classify_error(line)
                if kind:
                    return kind
        if status.exit_status is not None:
            return f"exit status {status.exit_status}"
        return status.exit_reason or status.state.value

    def queue_waits(self) -> List[float]:
        return []
